"""Shared fixtures and helpers: tiny training configs, trained-looking BatchNorms, and one briefly
trained checkpoint for the session."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from data import AugmentConfig, DataConfig
from data.synthetic.render import STYLES
from train_efficientvit import TrainConfig, main

EASY = STYLES["narrow"]  # the synthetic eyes `trained_checkpoint` learnt: show it these


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


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """best.pt of a tiny_efficientvit trained briefly on 96x160 synthetic eyes of the narrow style
    (it finds their pupils; tests show it frames rendered with `EASY`)."""
    out = tmp_path_factory.mktemp("trained")
    config = TrainConfig(
        epochs=6,
        batch_size=8,
        lr=4e-3,
        workers=0,
        mlflow=False,
        out_dir=str(out),
        data=DataConfig(img_size=(96, 160), synthetic_train=384, synthetic_val=48, synthetic_style="narrow"),
        augment=AugmentConfig(affine_p=0.0, photometric_p=0.0, noise_p=0.0),
    )
    main(config)
    return out / "best.pt"
