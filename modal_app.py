"""Train pupil-segmentation models on Modal's cloud GPUs, with the same code as a local run.

    modal token new                                                  # once: log in to Modal
    modal run modal_app.py                                           # synthetic eyes, 10 epochs, L4
    modal run modal_app.py --data-dir openeds --epochs 50 --model shallownet
    modal run --detach modal_app.py --data-dir openeds --epochs 80 --run-name openeds-long
    modal run modal_app.py --models tiny_efficientvit,shallownet --lrs 1e-3,3e-3 --seeds 0,1  # a sweep
    modal run modal_app.py --help                                    # every flag
    modal run modal_app.py::app.predict --input sessions             # predict.py on many recordings

The flags are train_efficientvit.py's, made from the same config.TrainConfig fields (config/flags.py; their
help: `python train_efficientvit.py --help`), less the local paths and device (--out-dir, --resume,
--init-from, --device), plus --gpu, --run-name and --mlflow-secret; --models, --lrs and --seeds
(comma-separated) make a sweep, run from a small CPU container so `--detach` keeps it all going.

Datasets live in the Modal Volume `pupil-datasets` (`modal volume put pupil-datasets ./openeds
openeds`; --data-dir names a folder in it); every run writes `best.pt`, `last.pt`, `best.onnx`, its
curves and its own MLflow store (`mlflow.db` + `mlruns/`) to `<run-name>/` in the Volume
`pupil-runs`, a sweep's runs to `<run-name>/<model>-lr<lr>-seed<seed>/`. The volume is committed
after every epoch, so a retried or preempted container resumes from `last.pt`; running again with
the same `--run-name` resumes or extends those runs with their own settings (flags that ask for
other ones are refused, as with --resume). Only what may not happen again is retried (preemption,
a volume or network error); a failure that would (bad settings or data, a bad checkpoint, a
non-finite loss, out of GPU memory) ends the run with one line, `error: run NAME failed: <Type>:
<message>`, or a row of the sweep's table. A Modal Secret holding MLFLOW_TRACKING_URI
(`--mlflow-secret NAME`) sends the runs to that MLflow server instead. Only the standard library,
`modal` and the project's standard-library `config/`, `core/` and `cloud/` (the planning of runs
and predict batches) are imported here: torch and the rest of the project load in
containers. `modal run modal_app.py::app.predict` runs predict.py on a folder of recordings in the
Volume `pupil-recordings`, a CPU container each (`cloud.predict` says how).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import modal

from cloud.predict import (
    RECORDINGS_DIR,
    RECORDINGS_VOLUME,
    plan_prediction,
    predict_recording,
    recordings_to_run,
    summarise,
)
from cloud.runs import (
    DATASETS_DIR,
    DATASETS_VOLUME,
    DEFAULT_GPU,
    DEFAULT_WORKERS,
    ENTRYPOINT,
    MODAL_DEFAULTS,
    RUNS_DIR,
    RUNS_VOLUME,
    TRAIN_FLAGS,
    check_run_name,
    gpu_count,
    plan_runs,
    resume_values,
    where_to_find,
)
from config import TrainConfig
from config.flags import train_config
from core.errors import one_line

APP_NAME = "tiny-pupil-seg"
PYTHON_VERSION = "3.11"
# per GPU: its process and DEFAULT_WORKERS data workers (data loading is CPU-bound; see cloud/runs.py)
TRAIN_CPU, TRAIN_MEMORY_MB = DEFAULT_WORKERS + 2.0, 16384
COMMIT_S = 60  # several GPUs: how often the waiting container commits what rank 0 wrote
DAY_S = 24 * 60 * 60  # Modal's longest timeout; each retry gets a fresh one and resumes
# retried: an exception raised by `train` (infrastructure: a volume, the network, a bad host); a
# failure that would repeat comes back as a summary with an "error", and a preemption restarts the call
TRAIN_RETRIES = modal.Retries(max_retries=3, initial_delay=10.0, backoff_coefficient=2.0)
HERE = Path(__file__).resolve().parent
# every package of the project (a folder with an __init__.py, the tests aside) and the entry scripts
# the containers run: nothing to keep in step by hand when a module is added or moved
PROJECT_PACKAGES = tuple(
    sorted(p.name for p in HERE.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")
)
ENTRY_SCRIPTS = ("train_efficientvit", "export_onnx", "predict")
PROJECT_MODULES = (*PROJECT_PACKAGES, *ENTRY_SCRIPTS)
SWEEP_MODULES = ("config", "core", "cloud", "reports")  # this file's imports and the table's: stdlib
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
    .add_local_dir(HERE / "pretrained", "/root/pretrained")  # predict's default model
)
sweep_image = modal.Image.debian_slim(python_version=PYTHON_VERSION).add_local_python_source(*SWEEP_MODULES)
datasets_volume = modal.Volume.from_name(DATASETS_VOLUME, create_if_missing=True)
runs_volume = modal.Volume.from_name(RUNS_VOLUME, create_if_missing=True)
recordings_volume = modal.Volume.from_name(RECORDINGS_VOLUME, create_if_missing=True)
app = modal.App(APP_NAME, image=image)


def move_artifact_paths(db: Path, old: str, new: str) -> None:
    """In a SQLite MLflow store, the artifact paths of experiments and runs that start with `old`
    start with `new` instead."""
    if not db.exists():
        return
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            connection.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                (new, len(old) + 1, len(old), old),
            )


@contextlib.contextmanager
def mlflow_store(runs_dir: Path, run_name: str) -> Iterator[str]:
    """MLflow's tracking URI for a run: MLFLOW_TRACKING_URI if set (a server), else a store of its
    own (runs_dir/run_name/mlflow.db, so parallel runs never share one SQLite file on the volume;
    artifacts in ./mlruns of the working directory, hence the chdir).

    MLflow records absolute artifact paths; outside this context they are relative to runs_dir
    (run_name/mlruns/...), so a download of the runs volume opens from the folder downloaded into.
    """
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        yield uri
        return
    run_dir, cwd = (Path(runs_dir) / run_name).resolve(), Path.cwd()
    db, here, there = run_dir / "mlflow.db", f"{run_dir}/mlruns/", f"{run_name}/mlruns/"
    move_artifact_paths(db, there, here)  # a resumed run logs to its artifacts where they are
    uri = os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    os.chdir(run_dir)
    try:
        yield uri
    finally:
        os.chdir(cwd)
        del os.environ["MLFLOW_TRACKING_URI"]
        move_artifact_paths(db, here, there)


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


def failure(exc: Exception) -> tuple[str, bool]:
    """'<ExceptionType>: <first line>', and whether a retry would fail the same way: bad settings,
    data or checkpoint (ValueError: DataError, CheckpointError), a non-finite loss (TrainingError),
    out of GPU memory; not a volume or network error or a bad host, which Modal retries."""
    import torch

    from training.loop import TrainingError
    from training.mlflow_log import TrackingError

    text = one_line(exc)  # a DataLoader worker's error: its last line
    # a bad setting, dataset or checkpoint, a non-finite loss, the secret's MLflow URI, GPU memory
    fixed = ValueError | TrainingError | TrackingError | torch.OutOfMemoryError
    repeats = isinstance(exc, fixed) or "out of memory" in text
    name = type(exc).__name__
    return (f"{name}: {text}" if str(exc).strip() else name), repeats


def run_training(
    values: dict[str, Any],
    run_name: str,
    runs_dir: str | Path,
    *,
    commit: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """`train_run` for Modal, giving back only plain data (the sweep's container has neither torch
    nor the project to unpickle more). A failure a retry would repeat is returned, so Modal does
    not retry it: {"run_name", "error": "<Type>: <first line>"}. Any other is raised as a
    RuntimeError of that text, which Modal retries; a preemption stays a KeyboardInterrupt, which
    stops the container, and Modal restarts the call. Either way the retry resumes from last.pt."""
    try:
        return train_run(values, run_name, Path(runs_dir), commit=commit)
    except Exception as exc:
        error, repeats = failure(exc)
        if not repeats:
            raise RuntimeError(error) from exc
    commit()  # what the failed run leaves: its checkpoints, its MLflow run marked FAILED
    print(f"{run_name} failed, not retried (a retry would fail the same way): {error}")
    return {"run_name": run_name, "error": error}


def train_run(values: dict[str, Any], run_name: str, runs_dir: Path, *, commit: Callable[[], None]) -> dict:
    """Train the settings given (dotted paths, from `plan_runs`) into runs_dir/run_name, resuming
    from its last.pt if there (given settings that differ from the run's own are an error, as with
    --resume). `commit` runs after each epoch and at the end (Modal's volume.commit). Returns main's
    summary, run_name, the seconds of each epoch run here (the first with setup) and the export's.
    """
    from models.checkpoint import load_checkpoint
    from train_efficientvit import main
    from training.distributed import is_main

    run_dir = runs_dir / check_run_name(run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    last = run_dir / "last.pt"
    if last.exists():
        stored = TrainConfig.from_dict(load_checkpoint(last)["train_config"])
        print(f"Resuming {run_name} from {last} (its stored model, data and optimiser settings win)")
        values = {**resume_values(values, stored, run_name), "resume": str(last)}
        settings = train_config(values, TRAIN_FLAGS, MODAL_DEFAULTS)  # main settles it, a moved data dir too
        settings = settings.replace(mlflow=stored.mlflow if settings.mlflow is None else settings.mlflow)
    else:
        settings = train_config({**values, "out_dir": str(run_dir)}, TRAIN_FLAGS, MODAL_DEFAULTS)
    ticks = [time.perf_counter()]

    def on_epoch_end(epoch: int, metrics: dict) -> None:
        ticks.append(time.perf_counter())
        commit()

    with mlflow_store(runs_dir, run_name) if settings.mlflow and is_main() else contextlib.nullcontext():
        summary = main(settings, on_epoch_end=on_epoch_end)
    commit()
    if not is_main():  # under several GPUs, rank 0 reports and exports
        return summary
    if summary["interrupted"]:  # preempted or cancelled: last.pt is safe, let the container stop
        raise KeyboardInterrupt(f"{run_name} interrupted; running it again resumes from {last}")
    onnx = export_best(run_dir, settings.data.data_dir)
    commit()
    epoch_seconds = [b - a for a, b in itertools.pairwise(ticks)]
    return {**summary, "run_name": run_name, "epoch_seconds": epoch_seconds, "onnx": onnx}


# what each function asks Modal for (tests read these, not Modal's internals)
CHECK_FUNCTION = {"volumes": {DATASETS_DIR: datasets_volume}, "cpu": 4.0, "timeout": 30 * 60}
TRAIN_FUNCTION = {
    "gpu": DEFAULT_GPU, "cpu": TRAIN_CPU, "memory": TRAIN_MEMORY_MB, "timeout": DAY_S,
    "retries": TRAIN_RETRIES, "volumes": {DATASETS_DIR: datasets_volume, RUNS_DIR: runs_volume},
}  # fmt: skip
SWEEP_FUNCTION = {"image": sweep_image, "timeout": DAY_S}
# predict.py on one recording: two CPU cores (reading, the model and writing overlap), the model from
# the image or the runs volume; retried, and resumed, after a preemption or a volume error
RECORDING_FUNCTION = {
    "cpu": 2.0, "memory": 4096, "timeout": DAY_S, "retries": TRAIN_RETRIES,
    "volumes": {RECORDINGS_DIR: recordings_volume, RUNS_DIR: runs_volume},
}  # fmt: skip
BATCH_FUNCTION = {"cpu": 1.0, "timeout": DAY_S, "volumes": {RECORDINGS_DIR: recordings_volume}}


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
    """One training run (the settings given, by dotted path) on a GPU, in RUNS_DIR/run_name:
    `run_training`'s summary, with an "error" for a failure not worth retrying."""
    import torch

    if not torch.cuda.is_available():  # e.g. a torch CUDA build newer than the host's driver
        raise RuntimeError(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU here")
    if (gpus := torch.cuda.device_count()) > 1:
        return train_on_gpus(gpus, values, run_name, runs_dir=Path(RUNS_DIR), commit=runs_volume.commit)
    return run_training(values, run_name, Path(RUNS_DIR), commit=runs_volume.commit)


def train_on_gpus(
    gpus: int, values: dict[str, Any], run_name: str, *, runs_dir: Path, commit: Callable[[], None]
) -> dict[str, Any]:
    """`run_training` in one process per GPU (DistributedDataParallel, as torchrun runs it; the batch
    size is the global one), rank 0 writing; this container process commits the volume every
    COMMIT_S meanwhile and once at the end, and returns rank 0's summary."""
    from training.distributed import launch

    try:
        return launch(gpus, run_training, values, run_name, runs_dir, tick=commit, every_s=COMMIT_S)
    finally:
        commit()


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
    """`train` on the chosen GPU type (TYPE:N for N GPUs, with CPUs and memory for each), logging to
    the MLflow server of a named secret if given."""
    n = gpu_count(gpu)
    options = {"gpu": gpu, "cpu": TRAIN_CPU * n, "memory": TRAIN_MEMORY_MB * n}
    if not mlflow_secret:
        return train.with_options(**options)
    secret = modal.Secret.from_name(mlflow_secret, required_keys=["MLFLOW_TRACKING_URI"])
    return train.with_options(**options, secrets=[secret])


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
    if error := summary.get("error"):  # one a retry would repeat; the run's folder keeps what it did
        print(where_to_find([name], secret))
        sys.exit(f"error: run {name} failed: {error}")
    print(f"Best validation pupil IoU {summary['best_metric']:.4f} at epoch {summary['best_epoch']}.")
    print(summary["onnx"].get("summary") or f"ONNX export failed: {summary['onnx']['error']}")
    print(where_to_find([name], secret))


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
    print(f"{table}\n{where_to_find([name for _, name in runs], mlflow_secret)}")
    return table


@app.function(**RECORDING_FUNCTION)
def predict_one(name: str, input_dir: str, output_dir: str, argv: list[str]) -> dict[str, Any]:
    """predict.py on one recording of the volume (`cloud.predict.predict_recording`)."""
    return predict_recording(name, Path(input_dir), Path(output_dir), argv, commit=recordings_volume.commit)


@app.function(**BATCH_FUNCTION)
def predict_batch(input_dir: str, output_dir: str, argv: list[str]) -> dict[str, str]:
    """Every recording of input_dir not finished in output_dir, a container each, in parallel;
    then recordings.csv. Returns {"table": a line per recording} or {"error": one line}. A Modal
    Function, so `modal run --detach` keeps the batch going after the local process is gone."""
    try:
        todo, total = recordings_to_run(Path(input_dir), Path(output_dir), argv)
    except ValueError as exc:
        return {"error": str(exc)}
    print(f"{total} recordings in {input_dir}: {total - len(todo)} done before, {len(todo)} to run")
    results = predict_one.map(todo, kwargs={"input_dir": input_dir, "output_dir": output_dir, "argv": argv},
                              return_exceptions=True)  # fmt: skip
    done = dict(zip(todo, results, strict=True))
    recordings_volume.reload()  # what every container committed
    table = summarise(Path(input_dir), Path(output_dir), done)
    recordings_volume.commit()
    print(table)
    return {"table": table}


def predict_on_modal(input: str, output: str = "", flags: str = "", checkpoint: str = "pretrained") -> None:
    """predict.py on every video and Pupil Core recording in a folder of the pupil-recordings
    volume, a CPU container each: --output (default <input>-predictions), --flags (predict.py's,
    quoted), --checkpoint (pretrained, or a model in the pupil-runs volume: RUN/best.onnx)."""
    try:
        source, target, argv = plan_prediction(input, output, flags, checkpoint)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    print(f"Predicting on {source} into {target} (volume {RECORDINGS_VOLUME})...")
    outcome = predict_batch.remote(str(source), str(target), argv)
    if error := outcome.get("error"):
        sys.exit(f"error: {error}")


# `modal run modal_app.py::app.predict`: an entrypoint of the app, not of this module, so that a plain
# `modal run modal_app.py` still finds one entrypoint of its own (training's `main`)
app.local_entrypoint(name="predict")(predict_on_modal)
