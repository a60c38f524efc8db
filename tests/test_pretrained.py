"""The pretrained model in pretrained/: small, complete, agreed between .pt and .onnx, and the model
predict.py and evaluate.py run when none is named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import evaluate
from data.synthetic import render_eye
from inference import PRETRAINED_DIR, load_predictor, model_file
from models.card import ModelCard
from models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from predict import main
from scripts import make_pretrained as make_pretrained_module
from scripts.make_pretrained import main as make_pretrained
from tests.conftest import EASY, make_checkpoint

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
    assert pt.card.to_onnx_metadata() == onnx.card.to_onnx_metadata()  # the same card, as JSON
    assert (pt.card.train_style, pt.card.train_seed) == ("full", 0)
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
        assert rows[name]["pupil_found"] == "1", name
        assert np.hypot(float(rows[name]["centre_x"]) - x, float(rows[name]["centre_y"]) - y) < 5, name


def test_evaluate_defaults_to_it():
    assert evaluate.build_parser().parse_args([]).checkpoint == ONNX


def last_pt(path: Path, name: str = "tiny_efficientvit") -> Path:
    """A training run's last.pt from before the card kept the training seed and style."""
    state = load_checkpoint(make_checkpoint(path, name, epoch=1))
    for key in ("train_seed", "train_style", "train_data_dir"):
        del state[key]
    training = {"out_dir": "/home/someone/runs/x", "seed": 7, "data": {"synthetic_style": "full"}}
    resume = {"optimizer_state": {"lr": torch.tensor(1.0)}, "history": [{"epoch": 1}]}
    return save_checkpoint({**state, **resume, "train_config": training}, path)


def fake_export(pt: Path, onnx: Path, log) -> None:
    """Stands in for export_onnx (slow here; tested in test_export.py): its "ONNX file" is the card
    of the .pt it was given."""
    onnx.write_text(json.dumps(ModelCard.from_checkpoint(load_checkpoint(pt), pt).to_onnx_metadata()))


def test_make_pretrained_ships_card_and_weights_only_and_refuses_other_models(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(make_pretrained_module, "export_onnx", fake_export)
    assert make_pretrained([str(last_pt(tmp_path / "last.pt")), str(tmp_path / "out")]) == 0
    shipped = load_checkpoint(tmp_path / "out" / "tiny_efficientvit.pt")
    assert "optimizer_state" not in shipped and "history" not in shipped and shipped["epoch"] == 1
    assert shipped["train_config"]["out_dir"] is None  # no folder of the machine it was made on
    assert (shipped["train_seed"], shipped["train_style"]) == (7, "full")  # the card, written out
    exported = json.loads((tmp_path / "out" / "tiny_efficientvit.onnx").read_text())
    assert exported == ModelCard.from_checkpoint(shipped, "shipped").to_onnx_metadata()  # of the shipped .pt
    other = last_pt(tmp_path / "shallow.pt", "shallownet")
    assert make_pretrained([str(other), str(tmp_path / "other")]) == 1
    assert "holds 'shallownet'" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_a_failed_export_leaves_the_previous_pair(tmp_path, capsys, monkeypatch):
    def failing(pt: Path, onnx: Path, log) -> None:
        onnx.write_text("half")
        raise ValueError(f"{onnx}: ONNX and PyTorch outputs differ")

    out = tmp_path / "out"
    out.mkdir()
    for suffix in (".pt", ".onnx"):
        (out / f"tiny_efficientvit{suffix}").write_text("previous")
    monkeypatch.setattr(make_pretrained_module, "export_onnx", failing)
    assert make_pretrained([str(last_pt(tmp_path / "last.pt")), str(out)]) == 1
    assert "outputs differ" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["tiny_efficientvit.onnx", "tiny_efficientvit.pt"]
    assert {p.read_text() for p in out.iterdir()} == {"previous"}


@pytest.mark.slow
def test_make_pretrained_exports_an_onnx_with_the_same_card(tmp_path):
    assert make_pretrained([str(last_pt(tmp_path / "last.pt")), str(tmp_path / "out")]) == 0
    shipped = load_checkpoint(tmp_path / "out" / "tiny_efficientvit.pt")
    predictor = load_predictor(tmp_path / "out" / "tiny_efficientvit.onnx")
    expected = ModelCard.from_checkpoint(shipped, "shipped").to_onnx_metadata()
    assert predictor.card.to_onnx_metadata() == expected
