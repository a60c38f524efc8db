"""The runs a Modal command line asks for (modal_app.py), planned and checked before any container
starts: the entrypoint's flags -> (settings given, by dotted path; run name) pairs, run names and
dataset folders on the volumes, a resumed run's settings, and where to download and browse a run.

Standard library only (with the project's standard-library config package), so the local side
and the sweep's CPU container, which has neither torch nor numpy, import it.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import re
import secrets
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from config import MODEL_NAMES, TrainConfig
from config.flags import flags, keyword_parameters, keyword_values, train_config

DATASETS_VOLUME, RUNS_VOLUME = "pupil-datasets", "pupil-runs"
DATASETS_DIR, RUNS_DIR = PurePosixPath("/datasets"), PurePosixPath("/runs")
DEFAULT_GPU = "L4"  # 24 GB and cheap per hour; --gpu T4, A10G, L40S, A100 or H100 also work, ":N" for N
GPU = re.compile(r"([A-Za-z][\w-]*)(?::([1-9]\d*))?")  # Modal's spelling: "H100", "H100:4"
# DataLoader workers per GPU: an 8,916-frame epoch in under 30 s needs >= 297 frames/s; one worker
# delivers 130 augmented 640x400 samples/s (python -m data bench, 2026-12-02), so 3 is the floor;
# 8 (1,040/s) leave room for slower vCPUs and a GPU faster than the target (its rate is unmeasured)
DEFAULT_WORKERS = 8
TRAIN_FLAGS = flags(TrainConfig, modal=True)  # train_efficientvit.py's, less local paths and devices
MODAL_DEFAULTS = {"workers": DEFAULT_WORKERS}  # where a Modal run's defaults differ from a local one's
MODAL_OPTIONS = dict(gpu=DEFAULT_GPU, run_name="", mlflow_secret="", models="", lrs="", seeds="")
RUN_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)*")  # no "..", no absolute paths
# the entrypoint's parameters: the training flags, then Modal's own and the sweep's comma-separated lists
ENTRYPOINT = inspect.Signature(keyword_parameters(TRAIN_FLAGS, extra=MODAL_OPTIONS))


def gpu_count(gpu: str) -> int:
    """How many GPUs `--gpu` asks for: "H100" 1, "H100:4" 4; a ValueError for another spelling."""
    if not (match := GPU.fullmatch(gpu)):
        raise ValueError(f"--gpu {gpu!r} must be a GPU type, or TYPE:COUNT for several (e.g. H100:4)")
    return int(match[2] or 1)


def check_run_name(name: str) -> str:
    """A run name is a relative folder on the runs volume: letters, digits, '.', '_', '-', '/'."""
    if not RUN_NAME.fullmatch(name):
        raise ValueError(f"run name {name!r} must be like 'my-run' or 'sweep-1/shallownet-lr0.001'")
    return name


def dataset_path(data: str) -> str | None:
    """--data-dir as the container sees it: '' -> None (synthetic eyes), 'openeds' -> /datasets/openeds."""
    if not data:
        return None
    path = PurePosixPath(data)
    if path.is_absolute():
        if not path.is_relative_to(DATASETS_DIR) or path == DATASETS_DIR:
            raise ValueError(f"--data-dir {data!r} must be a folder in the datasets volume, e.g. 'openeds'")
        path = path.relative_to(DATASETS_DIR)
    if ".." in path.parts:
        raise ValueError(f"--data-dir {data!r} must stay inside the datasets volume")
    return str(DATASETS_DIR / path)


def resume_values(values: dict[str, Any], stored: TrainConfig, run_name: str) -> dict[str, Any]:
    """`values` less the settings a resumed run keeps; a ValueError if they ask for other ones."""
    fixed = {f.path: f.name for f in TRAIN_FLAGS if f.on_resume == "fixed" and f.path in values}
    changed = [
        name
        for path, name in fixed.items()
        if functools.reduce(getattr, path.split("."), stored) != values[path]
    ]
    if changed:
        raise ValueError(
            f"run {run_name} exists with other settings; drop {', '.join(changed)} or name another run"
        )
    return {k: v for k, v in values.items() if k not in fixed}


def _list(text: str, kind: type, flag: str, *, choices: tuple[str, ...] = ()) -> list:
    """'1e-3,3e-3' -> [0.001, 0.003]; a malformed list (or a value not in `choices`) is a ValueError."""
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or (choices and not set(values) <= set(choices)):
        wanted = f"names from {', '.join(choices)}" if choices else f"{kind.__name__} values"
        raise ValueError(f"{flag} must be comma-separated {wanted}, got {text!r}")
    return values


def plan_runs(keywords: dict[str, Any]) -> tuple[list[tuple[dict[str, Any], str]], bool]:
    """The runs the entrypoint's flags ask for, as (the settings given, by dotted path; run name),
    and whether they are a sweep. The settings are checked here, before any container starts.

    Training flags are train_efficientvit.py's (config.TrainConfig); --data-dir is a folder in the
    datasets volume. --models / --lrs / --seeds make a sweep: a run per combination, in
    RUN-NAME/<model>-lr<lr>-seed<seed>, logged to the MLflow experiment RUN-NAME unless given.
    """
    keywords = {p.name: p.default for p in ENTRYPOINT.parameters.values()} | keywords
    gpu_count(keywords["gpu"])
    values = keyword_values(keywords, TRAIN_FLAGS)
    if "data.data_dir" in values:
        values["data.data_dir"] = dataset_path(values["data.data_dir"])
    config = train_config(values, TRAIN_FLAGS, MODAL_DEFAULTS)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"  # two runs started together differ
    axes = {k: keywords[k] for k in ("models", "lrs", "seeds")}
    if not any(axes.values()):
        return [(values, check_run_name(keywords["run_name"] or f"{config.model}-{stamp}"))], False
    name = check_run_name(keywords["run_name"] or f"sweep-{stamp}")
    values = {"experiment": name, **values}
    grid = itertools.product(
        _list(axes["models"], str, "--models", choices=MODEL_NAMES) if axes["models"] else [config.model],
        _list(axes["lrs"], float, "--lrs") if axes["lrs"] else [config.lr],
        _list(axes["seeds"], int, "--seeds") if axes["seeds"] else [config.seed],
    )
    runs = [
        ({**values, "model": m, "lr": lr, "seed": s}, f"{name}/{m}-lr{lr:g}-seed{s}") for m, lr, s in grid
    ]
    return runs, True


def where_to_find(run_names: list[str], mlflow_secret: str) -> str:
    """How to download runs (the top folder of their names on the runs volume, so the download
    mirrors the volume) and browse each one's MLflow store from the folder downloaded into."""
    top = run_names[0].split("/")[0]
    lines = [f"Download: modal volume get {RUNS_VOLUME} {top} .  (checkpoints, ONNX, curves, MLflow)"]
    if mlflow_secret:
        return "\n".join([*lines, f"Browse:   the MLflow server of secret {mlflow_secret!r}"])
    lines += [f"Browse:   mlflow ui --backend-store-uri sqlite:///{run}/mlflow.db" for run in run_names]
    return "\n".join(lines)
