"""MLflow tracking and the loss / IoU curves a training run logs (its prediction grids: reports/gallery.py).

With no MLFLOW_TRACKING_URI set, MLflow 3 uses its local default: a SQLite `mlflow.db` and an
`mlruns/` artifact folder in the working directory, so `mlflow ui` shows runs right away. A set
URI (a server, Databricks) is used as is, and checked at start so an unreachable server is an
error before training rather than a crash mid-run.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import TrackingError, one_line

if TYPE_CHECKING:  # annotations only: importing tracking loads no torch
    from data import EyeDataset
    from training.loop import Run


def _flatten(values: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise the opening of a local SQLite store across processes.

    MLflow creates and migrates its tables on first use; two runs doing that at once (a sweep
    started in one folder) leave a database that neither can open.
    """
    if not uri.startswith("sqlite:///") or os.name != "posix":
        yield
        return
    import fcntl

    with open(f"{uri.removeprefix('sqlite:///')}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


LOCAL_PATHS = ("out_dir", "resume", "init_from")  # TrainConfig's paths of this machine, logged by name


def redacted(text: str) -> str:
    """`text` with the credentials of any URI in it hidden: http://user:password@host -> http://***@host."""
    return re.sub(r"(\b[a-zA-Z][\w+.-]*://)[^/@\s]+@", r"\1***@", text)


class MlflowRun:
    """One MLflow run, started fresh or continued (resume) by id."""

    def __init__(self, experiment: str, run_name: str, run_id: str | None = None) -> None:
        import mlflow

        self.mlflow = mlflow
        uri = mlflow.get_tracking_uri()
        # Fail fast on an unreachable server instead of retrying for minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        try:
            with _store_lock(uri):
                mlflow.set_experiment(experiment)
                self.run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run_name)
        except Exception as exc:
            first = redacted(one_line(exc))[:200]
            raise TrackingError(f"MLflow tracking store {redacted(uri)} is not usable: {first}") from None
        self.run_id = self.run.info.run_id
        self.uri = redacted(uri)  # for messages: never the password
        self.broken: str | None = None  # why logging stopped, after a failure mid-run
        self.skipped = 0  # calls not made since

    def _mid_run(self, what: str, call: Callable[[], object]) -> None:
        """Make a logging call; after the store fails once, training goes on without it: one
        warning, then the calls are counted, not made (the run folder still gets every file)."""
        if self.broken is not None:
            self.skipped += 1
            return
        try:
            call()
        except Exception as exc:
            self.broken = redacted(one_line(exc))[:200]
            print(
                f"warning: MLflow ({self.uri}) failed to {what}: {self.broken}; training goes on, "
                "its checkpoints, curves and grids are still written to the run folder",
                file=sys.stderr,
            )

    def log_params(self, params: dict) -> None:
        # A resumed run already holds its params; MLflow refuses to change them.
        existing = self.mlflow.get_run(self.run_id).data.params
        new = {k: v[:6000] for k, v in _flatten(params).items() if k not in existing}
        if new:
            self.mlflow.log_params(new)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.mlflow.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._mid_run("log metrics", lambda: self.mlflow.log_metrics(metrics, step=step))

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._mid_run(f"log {path.name}", lambda: self.mlflow.log_artifact(str(path), artifact_path=folder))

    def end(self, status: str = "FINISHED") -> None:
        """End the run as `status`, tried even after a failure (the store may be back)."""
        broken, self.broken = self.broken, None
        self._mid_run(f"end the run as {status}", lambda: self.mlflow.end_run(status=status))
        if broken is not None:
            print(f"MLflow: {self.skipped} logging calls after the failure were not made", file=sys.stderr)


def start_tracking(
    run: Run, out_dir: Path, *, train_set: EyeDataset, val_set: EyeDataset
) -> MlflowRun | None:
    """The MLflow run (continued on resume) with the settings, sizes and environment as params."""
    import platform

    import torch

    config = run.config
    if not config.mlflow:
        return None
    tracker = MlflowRun(config.experiment, out_dir.name, run.mlflow_run_id)
    try:
        dataset = {"source": train_set.source_name, "train": len(train_set), "val": len(val_set)}
        env = {"device": str(next(run.model.parameters()).device), "torch": torch.__version__}
        # the folders by name: the store may be shared, and a path shows the user's home
        folders = {key: Path(value).name for key in LOCAL_PATHS if (value := getattr(config, key))}
        settings = config.to_dict() | folders
        if config.data.data_dir:
            settings["data"] = settings["data"] | {"data_dir": Path(config.data.data_dir).name}
        tracker.log_params(
            {
                **settings,
                "params_trainable": run.model.get_num_trainable_params(),
                "params_total": run.model.get_num_total_params(),
                "dataset": dataset,
                "env": {**env, "python": platform.python_version()},
            }
        )
        tags = {"model": config.model, "dataset": train_set.source_name}
        tracker.set_tags(tags | ({"init_from": folders["init_from"]} if config.init_from else {}))
    except Exception as exc:  # the store took the run but not its params: one line, as at the start
        tracker.end("FAILED")
        first = redacted(one_line(exc))[:200]
        raise TrackingError(f"MLflow tracking store {tracker.uri} is not usable: {first}") from None
    except BaseException:
        tracker.end("FAILED")
        raise
    run.mlflow_run_id = tracker.run_id
    return tracker


def plot_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Loss and IoU per epoch, train vs validation, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        axes[0].plot(epochs, [h[f"{split}/loss"] for h in history], marker="o", label=split)
        axes[1].plot(epochs, [h[f"{split}/pupil_iou"] for h in history], marker="o", label=f"{split} pupil")
    axes[1].plot(epochs, [h["val/miou"] for h in history], linestyle="--", label="val mIoU")
    for ax, title in zip(axes, ("loss (can go negative: surface term)", "IoU"), strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
