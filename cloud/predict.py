"""Many recordings at once on Modal: one CPU container per recording, reading from and writing to
the Modal Volume `pupil-recordings`, with the outputs `predict.py --input DIR/` writes locally.

    modal volume put pupil-recordings ./sessions sessions     # videos, Pupil Core or Neon recording folders
    modal run modal_app.py::app.predict --input sessions
    modal run --detach modal_app.py::app.predict --input sessions --flags "--img-size native"
    modal volume get pupil-recordings sessions-predictions .

Each video or Pupil Core or Neon recording folder in --input gets its own container, which runs predict.py
on it into --output/<its name>/ (default: <input>-predictions) and marks it finished; a recording
that fails says why in one line and the others go on. --output/recordings.csv then sums up every
finished one, as a local batch does. Running the same command again skips the finished ones, so a
batch that was stopped, or had failures fixed since, resumes. --flags are predict.py's, for every
recording; --checkpoint is `pretrained` (the model shipped in the image) or a model in the
`pupil-runs` volume (`first/best.onnx`, as `modal run modal_app.py` trains it). Containers are CPU
ones: the shipped model makes 150-270 frames/s on two cores at 192x192, and many run at once.

Standard library at import (modal_app.py imports it on the local side); predict.py and what it
needs load in the containers.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from cloud.runs import RUNS_DIR
from core.errors import one_line

RECORDINGS_VOLUME = "pupil-recordings"
RECORDINGS_DIR = PurePosixPath("/recordings")
# set per container, or meaningless on a volume: refused in --flags
MANAGED_FLAGS = (
    "--input", "--output", "--overwrite", "--save-dataset", "--lsl", "--realtime", "--checkpoint", "--model",
)  # fmt: skip


def volume_path(name: str, flag: str) -> PurePosixPath:
    """A folder in the recordings volume from a path relative to its root (or under
    RECORDINGS_DIR); ValueError for another absolute path or one that climbs out with `..`."""
    path = PurePosixPath(name)
    if path.is_relative_to(RECORDINGS_DIR):
        path = path.relative_to(RECORDINGS_DIR)
    if not path.parts or path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"{flag} {name!r}: give a folder in the {RECORDINGS_VOLUME} volume, relative to its root"
        )
    return RECORDINGS_DIR / path


def plan_prediction(
    input: str, output: str = "", flags: str = "", checkpoint: str = "pretrained"
) -> tuple[PurePosixPath, PurePosixPath, list[str]]:
    """The input and output folders in the volume and predict.py's arguments for every recording
    (less --input and --output); ValueError, naming the flag, for what cannot work."""
    source = volume_path(input, "--input")
    target = volume_path(output, "--output") if output else source.with_name(f"{source.name}-predictions")
    if target == source or source in target.parents:
        raise ValueError(f"--output {output!r}: not inside --input, whose every folder is a recording")
    try:
        argv = shlex.split(flags)
    except ValueError as exc:
        raise ValueError(f"--flags {flags!r}: {exc}") from None
    if managed := [a for a in argv if a.split("=")[0] in MANAGED_FLAGS]:
        raise ValueError(f"--flags: {', '.join(managed)} is set here, not in --flags")
    path = PurePosixPath(checkpoint)
    path = (
        path.relative_to(RUNS_DIR) if path.is_relative_to(RUNS_DIR) else path
    )  # RUN/best.onnx or /runs/RUN/...
    model = checkpoint if checkpoint == "pretrained" else str(RUNS_DIR / str(path).lstrip("/"))
    return source, target, [*argv, "--checkpoint", model]


def recordings_to_run(input_dir: Path, output_dir: Path, argv: list[str]) -> tuple[list[str], int]:
    """The names of input_dir's recordings (videos, Pupil Core folders) not finished in output_dir,
    and how many there are; ValueError when the flags or the folder are not usable."""
    from pipeline.batch import DONE, batch_inputs, output_name
    from predict import build_parser

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):  # one line instead
        try:
            parsed = build_parser().parse_args([*argv, "--input", str(input_dir)])
        except SystemExit:
            said = errors.getvalue().strip().splitlines() or ["--help and the like are not for a batch"]
            raise ValueError(f"--flags: {said[-1]}") from None
    # what argparse took for one of them, however abbreviated (--ls, --save-d)
    given = {"--lsl": parsed.lsl is not None, "--realtime": parsed.realtime, "--overwrite": parsed.overwrite}
    if managed := [flag for flag, on in given.items() if on] + ["--save-dataset"] * bool(parsed.save_dataset):
        raise ValueError(f"--flags: {', '.join(managed)} is set here, not in --flags")
    if not input_dir.is_dir():
        raise ValueError(f"{input_dir}: no such folder in the {RECORDINGS_VOLUME} volume")
    inputs = batch_inputs(input_dir)
    if not inputs:
        raise ValueError(f"{input_dir}: holds no videos or Pupil Core recording folders")
    return [path.name for path in inputs if not (output_dir / output_name(path) / DONE).exists()], len(inputs)


def predict_recording(
    name: str, input_dir: Path, output_dir: Path, argv: list[str], *, commit: Callable[[], None]
) -> dict[str, Any]:
    """predict.py on input_dir/name into output_dir/<its name> (`pipeline.batch.output_name`),
    marked finished when it succeeds, then `commit` (Modal's volume.commit). Returns
    {"recording", "frames", "error"}: a failure, reported by predict.py (a bad file, a bad model) or
    not (a bug), comes back as one line, which a retry would only repeat. A stop by a signal
    (preemption) raises KeyboardInterrupt, so Modal runs it again."""
    from pipeline.batch import DONE, output_name
    from predict import main as predict_main

    folder = output_dir / output_name(input_dir / name)
    shutil.rmtree(folder, ignore_errors=True)  # a run cut short before: its partial results go
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            code = predict_main([*argv, "--input", str(input_dir / name), "--output", str(folder)])
        except Exception as exc:  # not one predict.py reports: a bug, which a retry would repeat
            code = 1
            print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
    print(errors.getvalue(), end="", file=sys.stderr)
    if code > 128:
        raise KeyboardInterrupt(f"{name}: stopped by a signal; it runs again")
    if code == 0:
        (folder / DONE).touch()
    commit()
    summaries = [*folder.glob("summary.json"), *folder.glob("eye*/summary.json")]
    frames = sum(json.loads(path.read_text())["frames"] for path in summaries)
    lines = [line for line in errors.getvalue().splitlines() if line.startswith("error: ")]
    error = (lines[-1].removeprefix("error: ") if lines else f"exit status {code}") if code else None
    return {"recording": name, "frames": frames, "error": error}


def summarise(input_dir: Path, output_dir: Path, results: dict[str, Any]) -> str:
    """Write output_dir/recordings.csv of every finished recording; a line per recording run
    (name: a result of `predict_recording`, or the exception its container raised) and where to
    get them."""
    from pipeline.batch import batch_inputs, write_recordings_csv

    write_recordings_csv(output_dir, batch_inputs(input_dir))
    lines = []
    for name, result in results.items():
        if isinstance(result, BaseException):
            first = (str(result).strip().splitlines() or [""])[0]
            lines.append(f"{name}: failed: {type(result).__name__}: {first}")
        elif result["error"]:
            lines.append(f"{name}: failed: {result['error']}")
        else:
            lines.append(f"{name}: {result['frames']} frames")
    where = PurePosixPath(output_dir)
    where = where.relative_to(RECORDINGS_DIR) if where.is_relative_to(RECORDINGS_DIR) else where
    lines.append(f"results: modal volume get {RECORDINGS_VOLUME} {where} .  (recordings.csv sums them up)")
    return "\n".join(lines)
