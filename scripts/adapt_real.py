"""Adaptation without labels, measured on labelled real frames and a real recording, as docs/real-eyes.md
reports it. The masks and the truth are read only to score; adapt.py never sees them.

    python scripts/adapt_real.py frames REAL_ROOT OUT [--checkpoint pretrained] [-- adapt.py flags]
    python scripts/adapt_real.py video REC_DIR OUT [--checkpoint pretrained] [-- adapt.py flags]

frames: REAL_ROOT/validation/ (people no model trained on; a person is a file name's first field,
the frame number its last). (1) adapt on the first half of each person's frames by frame number,
score the start and the adapted model on the second halves; (2) for each person, adapt on all of
that person's frames and score on the other people's.
video: REC_DIR/eye0.mp4 and truth.csv (Pupil Capture's detector: centre_x, centre_y, closed per
frame). Adapt on the first half of the recording's frames, then predict.py with the start and the
adapted model over the second half: the pupil centre against the truth on open frames.
Prints the lines of the tables of docs/real-eyes.md; the runs stay in OUT.
"""

import argparse
import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from adapt import main as adapt_main  # noqa: E402
from evaluate import evaluate  # noqa: E402
from inference import model_file  # noqa: E402
from predict import main as predict_main  # noqa: E402
from scripts.score_line import score_line  # noqa: E402


def people(split: Path) -> dict[str, list[Path]]:
    """A person's frames, by frame number: `<person>_..._<frame>.png`."""
    found: dict[str, list[Path]] = {}
    for image in sorted((split / "images").glob("*.png")):
        found.setdefault(image.name.split("_")[0], []).append(image)
    number = re.compile(r"(\d+)\.png$")
    return {p: sorted(files, key=lambda f: int(number.search(f.name)[1])) for p, files in found.items()}


def link(files: list[Path], folder: Path, masks: bool) -> Path:
    """A folder of links to `files` (and, for a dataset, their masks) in the mask-folder layout."""
    for image in files:
        pairs = [(image, folder / image.name)]
        if masks:
            mask = image.parent.parent / "masks" / image.name
            pairs = [(image, folder / "images" / image.name), (mask, folder / "masks" / image.name)]
        for source, target in pairs:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve())
    return folder


def adapted(inputs: list[Path], out: Path, checkpoint: str, flags: list[str]) -> Path | None:
    """adapt.py's model, or None where it refused (its reason is on stderr)."""
    argv = ["--input", *map(str, inputs), "--output", str(out), "--checkpoint", checkpoint, *flags]
    return out / "adapted.pt" if adapt_main(argv) == 0 else None


def score(checkpoint: Path | None, root: Path, label: str) -> None:
    if checkpoint is None:
        print(f"{label:24s} refused by adapt.py", flush=True)
    else:
        print(score_line(evaluate(checkpoint, root, "validation"), label), flush=True)


def frames(real: Path, out: Path, checkpoint: str, flags: list[str]) -> None:
    by_person = people(real / "validation")
    start = model_file(checkpoint, ".pt")
    halves = {p: (files[: len(files) // 2], files[len(files) // 2 :]) for p, files in by_person.items()}
    firsts = [link(first, out / "first-half" / p, masks=False) for p, (first, _) in halves.items()]
    held = out / "second-half" / "validation"
    for _, second in halves.values():
        link(second, held, masks=True)
    model = adapted(firsts, out / "adapt-first-halves", checkpoint, flags)
    score(start, held.parent, "start, second halves")
    score(model, held.parent, "adapted on the first halves")
    for person, files in by_person.items():
        others = out / f"not-{person}" / "validation"
        for other, rest in by_person.items():
            if other != person:
                link(rest, others, masks=True)
        mine = link(files, out / "person" / person, masks=False)
        model = adapted([mine], out / f"adapt-{person}", checkpoint, flags)
        score(start, others.parent, f"start, all but {person}")
        score(model, others.parent, f"adapted on {person}, all but {person}")


def centre_errors(pupil_csv: Path, truth: list[dict], first: int) -> np.ndarray:
    """|centre - truth| (px) on frames open in the truth, from frame `first` on."""
    with pupil_csv.open() as f:
        rows = list(csv.DictReader(f))
    errors = []
    for row, want in zip(rows, truth[first:], strict=False):
        if want["closed"] == "0":
            found = row["centre_x"] != ""
            dx = float(row["centre_x"]) - float(want["centre_x"]) if found else np.inf
            dy = float(row["centre_y"]) - float(want["centre_y"]) if found else 0.0
            errors.append(np.hypot(dx, dy))
    return np.array(errors)


def video(rec: Path, out: Path, checkpoint: str, flags: list[str]) -> None:
    capture = cv2.VideoCapture(str(rec / "eye0.mp4"))
    images = []
    while (ok := capture.read())[0]:
        images.append(cv2.cvtColor(ok[1], cv2.COLOR_BGR2GRAY))
    half = len(images) // 2
    for name, part in (("first-half", images[:half]), ("second-half", images[half:])):
        (out / name).mkdir(parents=True)
        for i, image in enumerate(part):
            cv2.imwrite(str(out / name / f"{i:06d}.png"), image)
    with (rec / "truth.csv").open() as f:
        truth = list(csv.DictReader(f))
    model = adapted([out / "first-half"], out / "adapt", checkpoint, flags)
    if model is None:
        sys.exit("error: adapt.py refused the recording's first half")
    for label, path in (("start", model_file(checkpoint, ".pt")), ("adapted", model)):
        result = out / f"predict-{label}"
        if predict_main(
            ["--checkpoint", str(path), "--input", str(out / "second-half"), "--output", str(result)]
        ):
            sys.exit(f"error: predict.py with {path} failed")
        errors = centre_errors(result / "pupil.csv", truth, half)
        summary = json.loads((result / "summary.json").read_text())
        print(
            f"{label:8s} second half, {errors.size} open frames: centre median {np.median(errors):.2f} px, "
            f"within 3 px {np.mean(errors <= 3):.1%}; tracked {summary['tracked_share']:.1%}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("frames", "video"))
    parser.add_argument("source", type=Path, help="REAL_ROOT (frames) or REC_DIR (video)")
    parser.add_argument("out", type=Path, help="a new folder for the runs")
    parser.add_argument("--checkpoint", default="pretrained")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)  # adapt.py's flags come after --
    args = parser.parse_args(argv[:cut])
    args.out.mkdir(parents=True)
    (frames if args.mode == "frames" else video)(args.source, args.out, args.checkpoint, argv[cut + 1 :])
    return 0


if __name__ == "__main__":
    sys.exit(main())
