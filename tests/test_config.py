"""The config package: one dict round trip, bounds, and command lines made from the dataclasses."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest

from config import AugmentConfig, Config, DataConfig, PreprocessConfig, SettingError, TrainConfig, setting
from config import flags as cli
from train_efficientvit import build_parser, parse_args


def test_a_train_config_survives_json_with_its_nested_configs():
    config = TrainConfig(
        lr=3e-3,
        data=DataConfig(img_size=(64, 96), synthetic_style="narrow"),
        augment=AugmentConfig(line_count=(2, 3)),
        preprocess=PreprocessConfig(clahe_tiles=(4, 2)),
    )
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_missing_fields_keep_defaults_and_unknown_ones_are_named():
    assert TrainConfig.from_dict({"lr": 0.01, "data": {"synthetic_val": 7}}).data.synthetic_val == 7
    with pytest.raises(ValueError, match=r"unknown DataConfig field\(s\) \['frames'\]"):
        TrainConfig.from_dict({"data": {"frames": 3}})


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: DataConfig(img_size=(16, 640)), "img_size"),
        (lambda: TrainConfig(lr=float("nan")), "lr"),
        (lambda: TrainConfig(alpha_floor=1.5), "alpha_floor"),
        (lambda: PreprocessConfig(clahe_tiles=(0, 8)), "clahe_tiles"),
        (lambda: AugmentConfig(scale=(1.1, 0.9)), "scale"),
    ],
)
def test_out_of_bounds_values_are_refused_by_name(make, name):
    with pytest.raises(SettingError, match=name) as error:
        make()
    assert error.value.name == name


@dataclass(frozen=True)
class Warmup(Config):
    """Warm-up: a setting added the way a new training setting is added."""

    warmup_epochs: int = setting(0, "epochs of linear lr warm-up", at_least=0)
    warmup_start: float = setting(0.1, "lr factor at the start", above=0, at_most=1)


def test_a_new_field_is_a_new_flag_with_its_help_default_and_bounds():
    parser = argparse.ArgumentParser()
    added = cli.add_settings(parser, Warmup)
    assert "epochs of linear lr warm-up (default: 0)" in " ".join(parser.format_help().split())
    values = cli.given(parser.parse_args(["--warmup-epochs", "3"]), added)
    assert values == {"warmup_epochs": 3}  # only what was given
    assert cli.build(Warmup, values, added) == Warmup(warmup_epochs=3)
    with pytest.raises(ValueError, match="argument --warmup-start: must be <= 1, got 2.0"):
        cli.build(Warmup, {"warmup_start": 2.0}, added)


def test_every_training_setting_is_a_flag_of_the_training_cli():
    parser, _ = build_parser()
    options = {option for action in parser._actions for option in action.option_strings}
    for flag in cli.flags(TrainConfig):
        assert flag.name in options, flag.path
    assert {"--no-augment", "--clahe-tiles", "--weight-decay"} <= options and "--flip-p" not in options


def test_nested_settings_are_fixed_on_resume_but_a_moved_data_folder():
    # TrainConfig.resumed carries over top-level settings only: a nested one must not ask for more
    # (the data folder's "moved" is handled by train_efficientvit.resumed_settings)
    nested = {f.path: f.on_resume for f in cli.flags(TrainConfig) if "." in f.path}
    assert nested.pop("data.data_dir") == "moved"
    assert nested and set(nested.values()) == {"fixed"}


def test_init_from_refuses_preprocessing_it_would_ignore(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--init-from", "pretrained", "--gamma", "1.0"])
    assert "--init-from keeps its checkpoint's preprocessing; drop --gamma" in capsys.readouterr().err


def test_flags_set_nested_settings_by_path():
    config = parse_args(["--img-size", "64x96", "--no-augment", "--gamma", "0.9", "--grad-clip", "2"])
    assert config.data.img_size == (64, 96) and not config.augment.enabled
    assert config.preprocess.gamma == 0.9 and config.grad_clip == 2.0


def test_resume_keeps_the_runs_settings_and_takes_the_machines():
    stored = TrainConfig(epochs=4, lr=3e-3, workers=2, data=DataConfig(img_size=(64, 96)))
    given = parse_args(["--resume", "run/last.pt", "--workers", "0", "--max-steps", "5"])
    assert (given.epochs, given.mlflow, given.model) == (None, None, None)  # the run's own
    resumed = given.resumed(stored)
    assert (resumed.epochs, resumed.lr, resumed.data.img_size) == (4, 3e-3, (64, 96))
    assert (resumed.workers, resumed.max_steps, resumed.resume) == (0, 5, "run/last.pt")
    assert parse_args(["--resume", "run/last.pt", "--epochs", "9"]).resumed(stored).epochs == 9


def test_resume_refuses_a_fixed_setting_by_its_flag(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--resume", "last.pt", "--img-size", "64x96", "--no-augment"])
    assert "drop --img-size, --no-augment" in capsys.readouterr().err
