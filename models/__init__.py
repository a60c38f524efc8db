"""Model registry: `build_model(name, **overrides)` and the names users may pass to `--model`.

Each registered model is a `SegmentationModel` (encoder -> decoder -> head) with a `config`
dataclass; a checkpoint's stored name and `config.to_dict()` rebuild the exact model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from config import MODEL_NAMES
from models.common import ConvBN, SegmentationModel, fuse_model
from models.efficientvit import (
    PARAM_LIMIT,
    EfficientViTConfig,
    TinyEfficientViT,
    tiny_efficientvit,
    tiny_efficientvit_xs,
)
from models.shallownet import ShallowNet, ShallowNetConfig, shallownet

MODELS: dict[str, Callable[..., SegmentationModel]] = {
    "tiny_efficientvit": tiny_efficientvit,
    "tiny_efficientvit_xs": tiny_efficientvit_xs,
    "shallownet": shallownet,
}
if tuple(MODELS) != MODEL_NAMES:  # config names them without importing torch
    raise ImportError(f"models.MODELS {tuple(MODELS)} and config.MODEL_NAMES {MODEL_NAMES} differ")


def build_model(name: str, **overrides) -> SegmentationModel:
    """Build a registered model; `overrides` replace fields of its config dataclass."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    return MODELS[name](**overrides)


def pick_device(name: str = "auto") -> torch.device:
    """`name` as a torch device ("auto": CUDA, then Apple MPS, then CPU); ValueError if unusable here."""
    mps = getattr(torch.backends, "mps", None)
    available = {"cuda": torch.cuda.is_available(), "mps": bool(mps and mps.is_available())}
    if name == "auto":
        return torch.device(next((kind for kind, ok in available.items() if ok), "cpu"))
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device: use auto, cpu, cuda, cuda:1 or mps") from None
    if not available.get(device.type, True):
        raise ValueError(f"--device {name!r}: no {device.type.upper()} device on this machine")
    return device


__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "PARAM_LIMIT",
    "ConvBN",
    "EfficientViTConfig",
    "SegmentationModel",
    "ShallowNet",
    "ShallowNetConfig",
    "TinyEfficientViT",
    "build_model",
    "fuse_model",
    "pick_device",
]
