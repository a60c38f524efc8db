"""Checkpoints: written atomically, read with one-line errors, and able to rebuild their model.

What a checkpoint holds is the model card's (models.card) plus the weights, and for a training
run's best.pt / last.pt the state resuming needs (train_efficientvit.py writes it).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from core.errors import CheckpointError, one_line
from core.runfolder import FILE_MODE
from models.card import ModelCard, ModelFileError
from models.common import SegmentationModel

RESUME_KEYS = (  # beside the card and the weights, in a training run's checkpoints
    "train_config", "optimizer_state", "scheduler_state", "scaler_state", "rng_state", "cuda_rng_state",
    "best_metric", "best_epoch", "history", "mlflow_run_id", "data_counts",
)  # fmt: skip


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write `state` to `path` via a temporary file and a rename: a kill never leaves half a file.
    The file gets the permissions the user's umask gives any new file (mkstemp's are 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with contextlib.suppress(OSError, AttributeError):  # no fchmod on Windows; some mounts refuse it
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _is_corrupt(exc: Exception) -> bool:
    """An unpickling or zip-archive failure of torch.load: the bytes are not a checkpoint."""
    if isinstance(exc, (pickle.UnpicklingError, EOFError, zipfile.BadZipFile)):
        return True
    return isinstance(exc, RuntimeError) and any(
        marker in str(exc) for marker in ("PytorchStreamReader", "inline_container", "zip archive")
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint and check it holds a model card; every problem is a `CheckpointError`
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        blocked = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if blocked:  # a readable pickle, but of objects a safe load refuses: not written by training
            raise CheckpointError(
                f"{path} is not a tiny-pupil-seg checkpoint: it holds objects a safe load refuses "
                f"({blocked[0][:120]})"
            ) from None
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
        if zipped:  # torch's errors here are "(101)", "[Errno 22]" and the like: say what they mean
            size = path.stat().st_size
            raise CheckpointError(
                f"{path}: a damaged PyTorch checkpoint ({size:,} bytes, cut short or corrupted: an "
                "interrupted copy or download?); copy it again"
            ) from None
        if _is_corrupt(exc):  # torch's own message suggests the unsafe weights_only=False
            raise CheckpointError(f"{path}: corrupt or not a readable PyTorch checkpoint") from None
        reason = one_line(exc)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({reason[:200]})") from None
    try:
        ModelCard.from_checkpoint(state, path)
    except ModelFileError as exc:
        raise CheckpointError(str(exc)) from None
    return state


def weights_only(state: dict) -> dict:
    """What running and fine-tuning a model need (card, weights, how it was trained), without the
    optimiser, RNG and history that only resuming uses: a file to ship."""
    keep = set(state) - set(RESUME_KEYS) | {"train_config"}
    return {key: state[key] for key in state if key in keep}


def non_finite_tensors(weights: dict) -> list[str]:
    """Names of the floating-point tensors in `weights` that hold a NaN or an infinity."""
    return [
        name
        for name, value in weights.items()
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()
    ]


def model_from_checkpoint(state: dict, path: str | Path = "checkpoint") -> SegmentationModel:
    """Rebuild the stored model with its weights, in eval mode; weights holding a NaN or an
    infinity (a diverged run) are a `CheckpointError`, so nothing scores or resumes them."""
    card = ModelCard.from_checkpoint(state, path)
    try:
        model = card.build_model()
        model.load_state_dict(state["model_state"])
    except (ValueError, RuntimeError, TypeError) as exc:
        first = one_line(exc)
        raise CheckpointError(f"{path}: weights do not fit model {card.model_name!r} ({first})") from None
    bad = non_finite_tensors(state["model_state"])
    if bad:
        count = f"{len(bad)} tensor{'s' * (len(bad) > 1)}"
        raise CheckpointError(
            f"{path} holds non-finite weights ({count}, e.g. {bad[0]}): a diverged run? "
            "Use, or resume from, an earlier checkpoint"
        )
    return model.eval()
