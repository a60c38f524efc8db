"""The pretrained model in pretrained/: small, complete, agreed between .pt and .onnx, and the model
predict.py and evaluate.py run when none is named."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import torch

import evaluate
from data import PreprocessConfig
from data.synthetic import render_eye
from inference import PRETRAINED_DIR, load_predictor, model_file
from models import build_model
from models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from predict import main
from scripts.make_pretrained import main as make_pretrained
from tests.conftest import EASY

PT, ONNX = model_file("pretrained", ".pt"), model_file("pretrained", ".onnx")


def test_both_files_ship_small_and_weights_only():
    assert PT.parent == ONNX.parent == PRETRAINED_DIR
    for path in (PT, ONNX):
        assert 0 < path.stat().st_size < 1_000_000, path
    state = load_checkpoint(PT)
    assert state["model_name"] == "tiny_efficientvit"
    assert not {"optimizer_state", "scheduler_state", "rng_state"} & set(state)  # nothing to resume
    model = model_from_checkpoint(state, PT)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) < 60_000


def test_pt_and_onnx_agree_and_name_the_synthetic_style():
    pt, onnx = load_predictor(PT), load_predictor(ONNX)
    assert pt.img_size == onnx.img_size and pt.preprocess_config == onnx.preprocess_config
    assert pt.info["train_style"] == onnx.info["train_style"] == "full"
    frame = render_eye(3, 0, (200, 200))[0]
    a, b = pt.probabilities([frame])[0], onnx.probabilities([frame])[0]
    assert np.abs(a - b).max() < 1e-3


def test_predict_without_model_uses_it_and_finds_easy_pupils(tmp_path, capsys):
    frames, truth = tmp_path / "frames", {}
    frames.mkdir()
    for i, size in enumerate(((200, 200), (400, 640), (480, 640))):  # a crop, OpenEDS, a webcam
        image, label = render_eye(11, i, size, style=EASY)[:2]
        cv2.imwrite(str(frames / f"eye{i}.png"), image)
        ys, xs = np.nonzero(label == 3)  # the pupil class of the synthetic labels
        truth[f"eye{i}.png"] = (xs.mean(), ys.mean())
    assert main(["--input", str(frames), "--output", str(tmp_path / "out")]) == 0
    assert "tiny_efficientvit" in capsys.readouterr().out
    with open(tmp_path / "out" / "pupil.csv", newline="") as f:
        rows = {row["frame"]: row for row in csv.DictReader(f)}
    for name, (x, y) in truth.items():
        assert rows[name]["pupil_found"] == "True", name
        assert np.hypot(float(rows[name]["centre_x"]) - x, float(rows[name]["centre_y"]) - y) < 5, name


def test_evaluate_defaults_to_it():
    assert evaluate.build_parser().parse_args([]).checkpoint == ONNX


def test_make_pretrained_keeps_what_running_needs_and_refuses_other_models(tmp_path, capsys):
    def checkpoint(name: str) -> dict:
        model = build_model(name)
        return {
            "model_name": name,
            "model_config": model.config.to_dict(),
            "model_state": model.state_dict(),
            "preprocess": PreprocessConfig().to_dict(),
            "img_size": [64, 96],
            "optimizer_state": {"lr": torch.tensor(1.0)},  # training state: not shipped
            "history": [{"epoch": 1}],
            "train_config": {"out_dir": "/home/someone/runs/x", "lr": 0.003},
            "epoch": 1,
        }

    source = save_checkpoint(checkpoint("tiny_efficientvit"), tmp_path / "last.pt")
    assert make_pretrained([str(source), str(tmp_path / "out")]) == 0
    shipped = load_checkpoint(tmp_path / "out" / "tiny_efficientvit.pt")
    assert "optimizer_state" not in shipped and "history" not in shipped and shipped["epoch"] == 1
    predictor = load_predictor(tmp_path / "out" / "tiny_efficientvit.onnx")
    assert predictor.img_size == (64, 96)
    other = save_checkpoint(checkpoint("shallownet"), tmp_path / "shallow.pt")
    assert make_pretrained([str(other), str(tmp_path / "other")]) == 1
    assert "holds 'shallownet'" in capsys.readouterr().err and not (tmp_path / "other").exists()
    assert shipped["train_config"]["out_dir"] is None  # no folder of the machine it was made on
