"""Checkpoints: written atomically, read with one-line errors, and able to rebuild their model.

A checkpoint is a dict holding at least `model_name`, `model_config`, `model_state`,
`preprocess` (the preprocessing config) and `img_size`; training adds optimizer, scheduler,
scaler and RNG state, epoch, metrics history and the MLflow run id so a run can resume.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from models import MODEL_NAMES, SegmentationModel, build_model

FORMAT = "tiny-pupil-seg/checkpoint-v1"
REQUIRED_KEYS = ("model_name", "model_config", "model_state", "preprocess", "img_size")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not one of ours; the message names the file."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write `state` to `path` via a temporary file and a rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
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
    """Read and validate a checkpoint; every problem is a `CheckpointError` naming the file."""
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
        if _is_corrupt(exc):  # torch's own message suggests the unsafe weights_only=False
            raise CheckpointError(f"{path}: corrupt or not a readable PyTorch checkpoint") from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a tiny-pupil-seg checkpoint (missing model name/config/state)")
    if state["model_name"] not in MODEL_NAMES:
        raise CheckpointError(
            f"{path} holds unknown model {state['model_name']!r}; known: {', '.join(MODEL_NAMES)}"
        )
    return state


INFERENCE_KEYS = REQUIRED_KEYS + ("num_params", "train_config", "epoch", "metrics")


def weights_only(state: dict) -> dict:
    """What running and fine-tuning a model need (weights, config, preprocessing, how it was
    trained), without the optimiser, RNG and history that only resuming uses: a file to ship."""
    return {key: state[key] for key in INFERENCE_KEYS if key in state}


def model_from_checkpoint(state: dict, path: str | Path = "checkpoint") -> SegmentationModel:
    """Rebuild the stored model with its weights, in eval mode."""
    try:
        model = build_model(state["model_name"], **state["model_config"])
        model.load_state_dict(state["model_state"])
    except (ValueError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit model {state['model_name']!r} ({first})") from None
    return model.eval()
