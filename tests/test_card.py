"""models/card.py: what a model file says about itself, in checkpoints and ONNX metadata alike."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from config import PreprocessConfig
from models import build_model
from models.card import ONNX_FORMAT, ModelCard, ModelFileError
from models.checkpoint import RESUME_KEYS, load_checkpoint
from tests.conftest import PRETRAINED_PT, tiny_config
from train_efficientvit import main

CARD = ModelCard(
    "shallownet",
    build_model("shallownet").config.to_dict(),
    (64, 96),
    PreprocessConfig(gamma=0.9),
    num_params=1234,
    epoch=3,
    metrics={"val/pupil_iou": 0.5},
    train_seed=2,
    train_style="narrow",
    train_data_dir="/data/eyes",
)


def test_a_card_survives_a_checkpoint_and_onnx_metadata():
    state = {**CARD.to_checkpoint(), "model_state": {}}
    assert ModelCard.from_checkpoint(state, "a.pt") == CARD
    props = json.loads(json.dumps(CARD.to_onnx_metadata(exporter="x")))  # strings, as ONNX keeps them
    assert props["format"] == ONNX_FORMAT and props["exporter"] == '"x"'
    read_back = ModelCard.from_onnx_metadata(props, "a.onnx")
    assert read_back == dataclasses.replace(CARD, train_data_dir=Path(CARD.train_data_dir).name)


def test_an_onnx_file_names_its_training_folder_not_where_it_was():
    card = dataclasses.replace(CARD, train_data_dir="/home/ann/data/eyes")
    assert json.loads(card.to_onnx_metadata()["train_data_dir"]) == "eyes"
    assert card.to_checkpoint()["train_data_dir"] == "/home/ann/data/eyes"  # resuming and export need it


def test_training_metrics_are_not_part_of_the_card():
    state = {**CARD.to_checkpoint(), "model_state": {}, "metrics": {"val/miou": 0.7, "train/loss": 0.2}}
    assert ModelCard.from_checkpoint(state, "a.pt").metrics == {"val/miou": 0.7}


def test_an_older_checkpoint_keeps_its_training_facts_in_train_config():
    old = {k: v for k, v in CARD.to_checkpoint().items() if not k.startswith("train_") and k != "format"}
    old |= {"model_state": {}, "train_config": {"seed": 5, "data": {"data_dir": None}}}
    card = ModelCard.from_checkpoint(old, "old.pt")
    assert (card.train_seed, card.train_style, card.train_data_dir) == (5, "narrow", None)  # before styles


@pytest.mark.parametrize("kind", ["checkpoint", "onnx"])
def test_another_format_version_is_refused_by_name(kind):
    if kind == "checkpoint":
        state = {**CARD.to_checkpoint(), "model_state": {}, "format": "tiny-pupil-seg/checkpoint-v9"}
        read = lambda: ModelCard.from_checkpoint(state, "future.pt")  # noqa: E731
    else:
        props = {**CARD.to_onnx_metadata(), "format": "tiny-pupil-seg/onnx-v9"}
        read = lambda: ModelCard.from_onnx_metadata(props, "future.onnx")  # noqa: E731
    with pytest.raises(ModelFileError, match=r"future\.(pt|onnx): .*format 'tiny-pupil-seg/\w+-v9'"):
        read()


def test_completed_fills_what_an_older_file_lacks():
    model = build_model("tiny_efficientvit_xs")
    card = dataclasses.replace(CARD, model_name="tiny_efficientvit_xs", model_config={}, num_params=None)
    full = card.completed(model)
    assert full.num_params == model.get_num_trainable_params() and full.build_model().config == model.config


def test_a_training_checkpoint_is_the_card_the_weights_and_the_resume_state(tmp_path):
    main(tiny_config(tmp_path, epochs=1, max_steps=1))
    state = load_checkpoint(tmp_path / "last.pt")
    assert set(state) == set(CARD.to_checkpoint()) | {"model_state"} | set(RESUME_KEYS)


def test_the_shipped_model_reads_alike_from_its_pt_and_its_onnx():
    from inference import load_predictor, model_file

    pt, onnx = load_predictor(PRETRAINED_PT).card, load_predictor(model_file("pretrained", ".onnx")).card
    assert pt == onnx and pt.train_style == "full" and pt.num_params == 56_734
