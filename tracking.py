"""MLflow tracking and the loss / IoU curves a training run logs (its prediction grids: gallery.py).

With no MLFLOW_TRACKING_URI set, MLflow 3 uses its local default: a SQLite `mlflow.db` and an
`mlruns/` artifact folder in the working directory, so `mlflow ui` shows runs right away. A set
URI (a server, Databricks) is used as is, and checked at start so an unreachable server is an
error before training rather than a crash mid-run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used; the message names the URI."""


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
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise TrackingError(f"MLflow tracking store {uri} is not usable: {first}") from None
        self.run_id = self.run.info.run_id
        self.uri = uri

    def log_params(self, params: dict) -> None:
        # A resumed run already holds its params; MLflow refuses to change them.
        existing = self.mlflow.get_run(self.run_id).data.params
        new = {k: v[:6000] for k, v in _flatten(params).items() if k not in existing}
        if new:
            self.mlflow.log_params(new)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.mlflow.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path=folder)

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


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
