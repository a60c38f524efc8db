"""Shared fixtures and helpers: tiny training configs, trained-looking BatchNorms, hand-made
checkpoints (through the model card, as training writes them) and the shipped pretrained model."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from config import DataConfig, TrainConfig
from data.synthetic.render import STYLES
from inference import model_file
from models.card import ModelCard
from models.checkpoint import load_checkpoint, save_checkpoint

EASY = STYLES["narrow"]  # the first renderer's eyes: any trained model finds their pupils
PRETRAINED_PT = model_file("pretrained", ".pt")  # finds pupils; 256x416 input, any frame size
PRETRAINED_ONNX = model_file("pretrained", ".onnx")  # its export
SMALL = (64, 96)  # (H, W): the input size of hand-made checkpoints


def tiny_config(out_dir: Path, **overrides) -> TrainConfig:
    """A run small enough for CPU tests: 48x64 synthetic frames, two batches, no MLflow."""
    values = {
        "epochs": 2,
        "batch_size": 4,
        "workers": 0,
        "mlflow": False,
        "out_dir": str(out_dir),
        "data": DataConfig(img_size=(48, 64), synthetic_train=8, synthetic_val=4),
        **overrides,
    }
    return TrainConfig(**values)


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BN non-trivial statistics and affine weights, as after training."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model


def disc(x: int, y: int, radius: int = 8, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    """A (H, W) uint8 mask, 1 on a filled circle: a pupil label or prediction."""
    return cv2.circle(np.zeros(shape, np.uint8), (x, y), radius, 1, -1)


def make_checkpoint(
    path: Path, model_name: str = "tiny_efficientvit", img_size: tuple[int, int] = SMALL, **card_fields
) -> Path:
    """An untrained model with trained-looking BatchNorms, saved as training saves a model file:
    its card's keys and the weights. `card_fields` set other card fields (train_seed, ...)."""
    torch.manual_seed(0)
    card = ModelCard(model_name, {}, img_size)
    model = randomize_batchnorm(card.build_model()).eval()
    card = ModelCard.of(model, model_name, img_size, **card_fields)
    return save_checkpoint({**card.to_checkpoint(), "model_state": model.state_dict()}, path)


def diverged_checkpoint(path: Path) -> Path:
    """A checkpoint whose first weight tensor went NaN, as a diverged run leaves it."""
    state = load_checkpoint(make_checkpoint(path))
    next(v for v in state["model_state"].values() if v.is_floating_point()).fill_(math.nan)
    return save_checkpoint(state, path)


def diverged_onnx(path: Path, value: float = math.nan) -> Path:
    """The pretrained export with `value` (NaN, or an infinity) in its first weight."""
    model = onnx.load(PRETRAINED_ONNX)
    weight = model.graph.initializer[0]
    array = numpy_helper.to_array(weight).copy()
    array.flat[0] = value
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(model, path)
    return path
