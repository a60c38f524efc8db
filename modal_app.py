"""Train pupil-segmentation models on Modal's cloud GPUs, with the same code as a local run.

    modal token new                                                  # once: log in to Modal
    modal run modal_app.py                                           # synthetic eyes, 10 epochs, L4
    modal run modal_app.py --data-dir openeds --epochs 50 --model shallownet
    modal run --detach modal_app.py --data-dir openeds --epochs 80 --run-name openeds-long
    modal run modal_app.py --models tiny_efficientvit,shallownet --lrs 1e-3,3e-3 --seeds 0,1  # a sweep
    modal run modal_app.py --help                                    # every flag

The flags are train_efficientvit.py's, made from the same config.TrainConfig fields (cli.py; their
help: `python train_efficientvit.py --help`), less the local paths and device (--out-dir, --resume,
--init-from, --device), plus --gpu, --run-name and --mlflow-secret; --models, --lrs and --seeds
(comma-separated) make a sweep, run from a small CPU container so `--detach` keeps it all going.

Datasets live in the Modal Volume `pupil-datasets` (`modal volume put pupil-datasets ./openeds
openeds`; --data-dir names a folder in it); every run writes `best.pt`, `last.pt`, `best.onnx`, its
curves and its own MLflow store (`mlflow.db` + `mlruns/`) to `<run-name>/` in the Volume
`pupil-runs`, a sweep's runs to `<run-name>/<model>-lr<lr>-seed<seed>/`. The volume is committed
after every epoch, so a retried or preempted container resumes from `last.pt`; running again with
the same `--run-name` resumes or extends those runs with their own settings (flags that ask for
other ones are refused, as with --resume). A Modal Secret holding MLFLOW_TRACKING_URI
(`--mlflow-secret NAME`) sends the runs to that MLflow server instead. Only the standard library,
`modal` and the project's standard-library `config.py` and `cli.py` are imported here: torch and
the rest of the project load in containers.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import modal

from cli import flags, keyword_parameters, keyword_values, train_config
from config import MODEL_NAMES, TrainConfig

APP_NAME = "tiny-pupil-seg"
PYTHON_VERSION = "3.11"
DATASETS_VOLUME, RUNS_VOLUME = "pupil-datasets", "pupil-runs"
DATASETS_DIR, RUNS_DIR = PurePosixPath("/datasets"), PurePosixPath("/runs")
DEFAULT_GPU = "L4"  # 24 GB and cheap per hour; --gpu T4, A10G, L40S, A100 or H100 also work
TRAIN_CPU, TRAIN_MEMORY_MB = 8.0, 16384  # data loading (decode, augment, distance maps) is CPU-bound
DEFAULT_WORKERS = 6  # DataLoader processes: TRAIN_CPU less the main process and some headroom
DAY_S = 24 * 60 * 60  # Modal's longest timeout; each retry gets a fresh one and resumes
TRAIN_RETRIES = modal.Retries(max_retries=3, initial_delay=10.0, backoff_coefficient=2.0)
TRAIN_FLAGS = flags(TrainConfig, modal=True)  # train_efficientvit.py's, less local paths and devices
MODAL_DEFAULTS = {"workers": DEFAULT_WORKERS}  # where a Modal run's defaults differ from a local one's
MODAL_OPTIONS = dict(gpu=DEFAULT_GPU, run_name="", mlflow_secret="", models="", lrs="", seeds="")
RUN_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)*")  # no "..", no absolute paths
PROJECT_MODULES = (  # what train_efficientvit and export_onnx import, transitively (a test checks)
    "cli", "config", "data", "models", "losses", "metrics", "tracking", "training", "inference",
    "gallery", "reports", "train_efficientvit", "export_onnx",
)  # fmt: skip
SWEEP_MODULES = ("cli", "config", "reports")  # this file's and the sweep table's: standard library only
PACKAGES = (  # the versions the test suite runs on; headless OpenCV needs no libGL in a slim image
    "torch==2.14.1", "torchvision==0.29.1", "numpy==2.4.6", "opencv-python-headless==5.0.0.93",
    "mlflow==3.17.2", "matplotlib==3.11.2", "onnx==1.23.2", "onnxruntime==1.32.0", "onnxscript==0.7.2",
    "tqdm==4.70.1",
)  # fmt: skip

image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .uv_pip_install(*PACKAGES)
    .env({"TQDM_MININTERVAL": "10"})  # progress bars every 10 s, not a log line per batch
    .add_local_python_source(*PROJECT_MODULES)
)
sweep_image = modal.Image.debian_slim(python_version=PYTHON_VERSION).add_local_python_source(
    "cli", "config", "reports"
)
datasets_volume = modal.Volume.from_name(DATASETS_VOLUME, create_if_missing=True)
runs_volume = modal.Volume.from_name(RUNS_VOLUME, create_if_missing=True)
app = modal.App(APP_NAME, image=image)


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


@contextlib.contextmanager
def mlflow_store(run_dir: Path) -> Iterator[str]:
    """MLflow's tracking URI for a run: MLFLOW_TRACKING_URI if set (a server), else a store of its
    own (run_dir/mlflow.db; artifacts in ./mlruns of the working directory, hence the chdir), so
    parallel runs never share one SQLite file on the volume."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        yield uri
        return
    uri, cwd = f"sqlite:///{run_dir / 'mlflow.db'}", Path.cwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.chdir(run_dir)
    try:
        yield uri
    finally:
        os.chdir(cwd)
        del os.environ["MLFLOW_TRACKING_URI"]


def export_best(run_dir: Path, calib_dir: str | None) -> dict[str, Any]:
    """Export run_dir/best.pt to a verified best.onnx beside it; a failure is reported, not raised."""
    try:
        from export_onnx import export_onnx

        report = export_onnx(run_dir / "best.pt", calib_dir=calib_dir, log=print)
    except Exception as exc:  # the checkpoints are what matters; a failed export must not lose them
        error = f"{type(exc).__name__}: {exc}"
        print(f"ONNX export failed ({error}); the checkpoints are kept in {run_dir}")
        return {"error": error}
    print(report.summary())
    return {"path": str(report.fp32.path), "summary": report.summary()}


def run_training(
    values: dict[str, Any],
    run_name: str,
    runs_dir: str | Path,
    *,
    commit: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Train the settings given (dotted paths, from `plan_runs`) into runs_dir/run_name, resuming
    from its last.pt if there (given settings that differ from the run's own are an error, as with
    --resume). `commit` runs after each epoch and at the end (Modal's volume.commit). Returns main's
    summary, run_name, the seconds of each epoch run here (the first with setup) and the export's.
    """
    from models.checkpoint import load_checkpoint
    from train_efficientvit import main

    run_dir = Path(runs_dir) / check_run_name(run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    last = run_dir / "last.pt"
    if last.exists():
        stored = TrainConfig.from_dict(load_checkpoint(last)["train_config"])
        print(f"Resuming {run_name} from {last} (its stored model, data and optimiser settings win)")
        values = {**resume_values(values, stored, run_name), "resume": str(last)}
        settings = train_config(values, TRAIN_FLAGS, MODAL_DEFAULTS).resumed(stored)
    else:
        settings = train_config({**values, "out_dir": str(run_dir)}, TRAIN_FLAGS, MODAL_DEFAULTS)
    ticks = [time.perf_counter()]

    def on_epoch_end(epoch: int, metrics: dict) -> None:
        ticks.append(time.perf_counter())
        commit()

    with mlflow_store(run_dir) if settings.mlflow else contextlib.nullcontext():
        summary = main(settings, on_epoch_end=on_epoch_end)
    commit()
    if summary["interrupted"]:  # preempted or cancelled: last.pt is safe, let the container stop
        raise KeyboardInterrupt(f"{run_name} interrupted; running it again resumes from {last}")
    onnx = export_best(run_dir, settings.data.data_dir)
    commit()
    epoch_seconds = [b - a for a, b in itertools.pairwise(ticks)]
    return {**summary, "run_name": run_name, "epoch_seconds": epoch_seconds, "onnx": onnx}


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


# what each function asks Modal for (tests read these, not Modal's internals)
CHECK_FUNCTION = {"volumes": {DATASETS_DIR: datasets_volume}, "cpu": 4.0, "timeout": 30 * 60}
TRAIN_FUNCTION = {
    "gpu": DEFAULT_GPU, "cpu": TRAIN_CPU, "memory": TRAIN_MEMORY_MB, "timeout": DAY_S,
    "retries": TRAIN_RETRIES, "volumes": {DATASETS_DIR: datasets_volume, RUNS_DIR: runs_volume},
}  # fmt: skip
SWEEP_FUNCTION = {"image": sweep_image, "timeout": DAY_S}


@app.function(**CHECK_FUNCTION)
def check_data(data_dir: str) -> tuple[bool, str]:
    """The data package's check of a dataset folder on the volume, on CPU, before any GPU starts."""
    from data import check_dataset

    report = check_dataset(data_dir)
    text = report.format()
    if not Path(data_dir).is_dir():
        found = sorted(p.name for p in Path(DATASETS_DIR).iterdir())
        text += f"\nthe {DATASETS_VOLUME} volume holds: {', '.join(found) or 'nothing yet'}"
    return report.ok, text


@app.function(**TRAIN_FUNCTION)
def train(values: dict[str, Any], run_name: str) -> dict[str, Any]:
    """One training run (the settings given, by dotted path) on a GPU, in RUNS_DIR/run_name; a
    retry resumes from its last.pt."""
    import torch

    if not torch.cuda.is_available():  # e.g. a torch CUDA build newer than the host's driver
        raise RuntimeError(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU here")
    return run_training(values, run_name, Path(RUNS_DIR), commit=runs_volume.commit)


def dataset_problem(data_dir: str | None) -> str | None:
    """Check the dataset on a CPU container first; the error to stop with if it is not usable."""
    if data_dir is None:
        print("No --data-dir: training on the built-in synthetic eyes.")
        return None
    ok, report = check_data.remote(data_dir)
    print(report)
    if ok:
        return None
    volume_path = PurePosixPath(data_dir).relative_to(DATASETS_DIR)
    return (
        f"{data_dir} is not usable for training (report above). Upload a dataset with\n"
        f"  modal volume put {DATASETS_VOLUME} ./openeds {volume_path}"
    )


def gpu_train(gpu: str, mlflow_secret: str) -> modal.Function:
    """`train` on the chosen GPU type, logging to the MLflow server of a named secret if given."""
    if not mlflow_secret:
        return train.with_options(gpu=gpu)
    secret = modal.Secret.from_name(mlflow_secret, required_keys=["MLFLOW_TRACKING_URI"])
    return train.with_options(gpu=gpu, secrets=[secret])


def where_to_find(folder: str, run_names: list[str], mlflow_secret: str) -> str:
    """How to download `folder` of the runs volume and browse each run's MLflow store."""
    lines = [f"Download: modal volume get {RUNS_VOLUME} {folder} .  (checkpoints, ONNX, curves, MLflow)"]
    if mlflow_secret:
        return "\n".join([*lines, f"Browse:   the MLflow server of secret {mlflow_secret!r}"])
    for run in run_names:
        db = PurePosixPath(PurePosixPath(folder).name, PurePosixPath(run).relative_to(folder), "mlflow.db")
        lines.append(f"Browse:   mlflow ui --backend-store-uri sqlite:///{db}")
    return "\n".join(lines)


# the training flags, then Modal's own and the sweep's comma-separated lists
ENTRYPOINT = inspect.Signature(keyword_parameters(TRAIN_FLAGS, extra=MODAL_OPTIONS))


def _list(text: str, kind: type, flag: str, choices: tuple[str, ...] = ()) -> list:
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
    values = keyword_values(keywords, TRAIN_FLAGS)
    if "data.data_dir" in values:
        values["data.data_dir"] = dataset_path(values["data.data_dir"])
    config = train_config(values, TRAIN_FLAGS, MODAL_DEFAULTS)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    axes = {k: keywords[k] for k in ("models", "lrs", "seeds")}
    if not any(axes.values()):
        return [(values, check_run_name(keywords["run_name"] or f"{config.model}-{stamp}"))], False
    name = check_run_name(keywords["run_name"] or f"sweep-{stamp}")
    values = {"experiment": name, **values}
    grid = itertools.product(
        _list(axes["models"], str, "--models", MODEL_NAMES) if axes["models"] else [config.model],
        _list(axes["lrs"], float, "--lrs") if axes["lrs"] else [config.lr],
        _list(axes["seeds"], int, "--seeds") if axes["seeds"] else [config.seed],
    )
    runs = [
        ({**values, "model": m, "lr": lr, "seed": s}, f"{name}/{m}-lr{lr:g}-seed{s}") for m, lr, s in grid
    ]
    return runs, True


def main(**keywords: Any) -> None:
    """Train one model, or a sweep (--models/--lrs/--seeds), on Modal GPUs."""
    try:
        runs, is_sweep = plan_runs(keywords)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    if problem := dataset_problem(runs[0][0].get("data.data_dir")):
        sys.exit(f"error: {problem}")
    gpu, secret = keywords.get("gpu", DEFAULT_GPU), keywords.get("mlflow_secret", "")
    if is_sweep:
        print(f"Sweep {runs[0][1].split('/')[0]}: {len(runs)} runs on {gpu} GPUs in parallel...")
        sweep.remote(runs, gpu, secret)
        return
    ((values, name),) = runs
    print(f"Training run {name!r} on a {gpu} (volume {RUNS_VOLUME})...")
    summary = gpu_train(gpu, secret).remote(values, name)
    print(f"Best validation pupil IoU {summary['best_metric']:.4f} at epoch {summary['best_epoch']}.")
    print(summary["onnx"].get("summary") or f"ONNX export failed: {summary['onnx']['error']}")
    print(where_to_find(name, [name], secret))


main.__signature__ = ENTRYPOINT  # Modal makes the entrypoint's flags from its signature
main.__annotations__ = {p.name: p.annotation for p in ENTRYPOINT.parameters.values()}
main = app.local_entrypoint()(main)


@app.function(**SWEEP_FUNCTION)
def sweep(runs: list[tuple[dict[str, Any], str]], gpu: str = DEFAULT_GPU, mlflow_secret: str = "") -> str:
    """Train every run on its own GPU in parallel; print and return a comparison table.

    A Modal Function (a small CPU container that waits for the GPUs), so `modal run --detach`
    keeps the whole sweep going after the local process is gone.
    """
    from reports.sweep import comparison_table

    results = list(gpu_train(gpu, mlflow_secret).starmap(runs, return_exceptions=True))
    jobs = [{"run_name": name, "model": v["model"], "lr": v["lr"], "seed": v["seed"]} for v, name in runs]
    table = comparison_table(list(zip(jobs, results, strict=True)))
    folder = runs[0][1].split("/")[0]
    print(f"{table}\n{where_to_find(folder, [name for _, name in runs], mlflow_secret)}")
    return table
