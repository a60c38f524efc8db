"""Model registry: `build_model(name, **overrides)` and the names users may pass to `--model`.

Each registered model is a `SegmentationModel` (encoder -> decoder -> head) with a `config`
dataclass; a checkpoint's stored name and `config.to_dict()` rebuild the exact model.
"""

from __future__ import annotations

from collections.abc import Callable

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
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def build_model(name: str, **overrides) -> SegmentationModel:
    """Build a registered model; `overrides` replace fields of its config dataclass."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    return MODELS[name](**overrides)


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
]
