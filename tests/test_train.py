"""CombinedLoss, the training loop end to end, MLflow logging, resume and bad input."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from data import DataConfig, EyeDataset, PreprocessConfig, expand_batch, preprocess, synthetic_frames
from data.targets import boundary_weight, distance_maps
from inference import model_file
from models import build_model
from models.card import ModelCard
from models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.conftest import randomize_batchnorm, tiny_config
from train_efficientvit import TrainingError, main, parse_args, settle
from training.loop import run_epoch
from training.losses import CombinedLoss, alpha_schedule, generalised_dice_loss, surface_loss


def disc_label(h: int = 32, w: int = 32, r: int = 8) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (((ys - h // 2) ** 2 + (xs - w // 2) ** 2) <= r * r).long()[None]  # (1, H, W)


def test_perfect_prediction_has_no_ce_and_no_dice_loss():
    label = disc_label()
    logits = torch.stack([(1 - label) * 40.0 - 20.0, label * 40.0 - 20.0], dim=1).float()
    targets = {"label": label, "weight": torch.zeros(1, 32, 32), "dist": torch.zeros(1, 2, 32, 32)}
    losses = CombinedLoss()(logits, targets, alpha=1.0)
    assert losses["ce"] < 1e-6
    assert losses["dice"] < 1e-6
    assert losses["total"] == pytest.approx(losses["ce"] + losses["dice"])


def test_wrong_prediction_has_full_dice_loss():
    label = disc_label()
    probs = torch.stack([label, 1 - label], dim=1).float()  # exactly inverted
    assert generalised_dice_loss(probs, label) == pytest.approx(1.0)


def test_surface_term_is_negative_inside_the_region():
    label = disc_label()[0]
    inside = torch.where(label.bool(), -1.0, 1.0)  # signed distance sign of the pupil class
    dist = torch.stack([-inside, inside])[None]
    probs = torch.stack([1 - label, label]).float()[None]
    assert surface_loss(probs, dist) < 0
    assert surface_loss(1 - probs, dist) > 0


def test_alpha_decays_over_its_span_then_holds():
    assert alpha_schedule(0, 125) == 1.0
    assert alpha_schedule(1, 2) == 0.5
    assert alpha_schedule(125, 125) == 0.0 and alpha_schedule(200, 125) == 0.0
    assert alpha_schedule(200, 125, floor=0.1) == 0.1
    with pytest.raises(ValueError, match="floor"):
        alpha_schedule(0, 10, floor=2.0)


EPOCH_METRICS = [
    f"{split}/{name}"
    for split in ("train", "val")
    for name in (
        "loss", "ce", "dice", "surface", "background_iou", "pupil_iou", "miou",
        "pupil_dice", "precision", "recall", "images_per_s",
    )
] + ["lr", "alpha"]  # fmt: skip


def test_smoke_run_writes_checkpoints_and_an_mlflow_run(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    summary = main(tiny_config(tmp_path / "run", max_steps=2, mlflow=True, experiment="smoke"))
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(tmp_path / "run" / name)
        assert state["model_name"] == "tiny_efficientvit" and state["img_size"] == [48, 64]
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert set(EPOCH_METRICS) <= set(run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val/pupil_iou")
    assert [m.step for m in history] == [1, 2]
    assert run.data.params["model"] == "tiny_efficientvit" and run.data.tags["dataset"] == "synthetic"
    assert int(run.data.params["params_trainable"]) > 0
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"curves.png", "predictions", "checkpoints"} <= artifacts


@pytest.mark.parametrize("model", ["tiny_efficientvit", pytest.param("shallownet", marks=pytest.mark.slow)])
def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, model):
    # split after epoch 2 of 3: alpha is already decaying there, so its schedule must carry over
    full = main(tiny_config(tmp_path / "full", model=model, epochs=3, alpha_span=3))
    main(tiny_config(tmp_path / "split", model=model, epochs=2, alpha_span=3))
    resumed = main(tiny_config(tmp_path / "ignored", epochs=3, resume=str(tmp_path / "split" / "last.pt")))
    assert resumed["out_dir"] == str(tmp_path / "split")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert [h["alpha"] for h in resumed["history"]] == [h["alpha"] for h in full["history"]]
    for key in ("train/loss", "val/loss", "val/pupil_iou", "val/miou"):
        assert resumed["metrics"][key] == pytest.approx(full["metrics"][key], abs=1e-6)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model_state"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model_state"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_extending_a_run_keeps_its_alpha_decay(tmp_path):
    main(tiny_config(tmp_path, epochs=2))  # alpha decays over 2 epochs: 1.0, 0.5
    extended = main(tiny_config(tmp_path, epochs=3, resume=str(tmp_path / "last.pt")))
    assert [h["alpha"] for h in extended["history"]] == [1.0, 0.5, 0.0]


def test_resume_takes_the_runs_epochs_unless_given(tmp_path):
    main(tiny_config(tmp_path, epochs=2, max_steps=1))
    assert parse_args(["--resume", str(tmp_path / "last.pt")]).epochs is None
    summary = main(tiny_config(tmp_path, epochs=None, resume=str(tmp_path / "last.pt")))
    assert summary["history"][-1]["epoch"] == 2  # already done: nothing more, nothing lost


def test_ctrl_c_mid_epoch_keeps_the_last_finished_epoch(tmp_path, monkeypatch, capsys):
    import train_efficientvit

    real, calls = train_efficientvit.run_epoch, []

    def interrupted_on_the_second_epoch(*args, **kwargs):
        calls.append(kwargs["train"])
        if calls.count(True) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_efficientvit, "run_epoch", interrupted_on_the_second_epoch)
    summary = main(tiny_config(tmp_path, epochs=3))
    assert summary["interrupted"]
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and [h["epoch"] for h in state["history"]] == [1]
    assert f"holds epoch 1. Resume with: python train_efficientvit.py --resume {tmp_path / 'last.pt'}" in (
        capsys.readouterr().out
    )


def test_ctrl_c_between_epochs_keeps_the_epoch_just_saved(tmp_path):
    def stop_after_epoch_2(epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    main(tiny_config(tmp_path, epochs=3), on_epoch_end=stop_after_epoch_2)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]


def test_a_crashed_run_is_failed_in_mlflow_not_finished(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def broken_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("training.loop.save_checkpoint", broken_disk)
    with pytest.raises(OSError, match="No space"):
        main(tiny_config(tmp_path / "run", max_steps=1, mlflow=True, experiment="crash"))
    runs = mlflow.search_runs(experiment_names=["crash"])
    assert list(runs["status"]) == ["FAILED"]


def test_without_mlflow_curves_and_grids_are_still_written(tmp_path):
    main(tiny_config(tmp_path, epochs=1, max_steps=1))
    assert (tmp_path / "curves.png").exists() and (tmp_path / "predictions_epoch001.png").exists()


def test_resume_refuses_settings_it_would_ignore(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--resume", str(tmp_path / "last.pt"), "--model", "shallownet", "--lr=0.1"])
    assert "drop --lr, --model" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # abbreviations would slip past that check: none are accepted
        parse_args(["--resume", str(tmp_path / "last.pt"), "--mod", "shallownet"])


def test_data_dir_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert settle(parse_args(["--data-dir", "eyes"]))[0].data.data_dir == str(tmp_path / "eyes")


@pytest.mark.parametrize("name", ["foo", "cuda:0" if not torch.cuda.is_available() else "foo:1"])
def test_unusable_device_is_a_one_line_error(tmp_path, name):
    with pytest.raises(ValueError, match=f"--device '{name}'"):
        main(tiny_config(tmp_path / "out", device=name))
    assert not (tmp_path / "out").exists()  # nothing created before the check


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    main(tiny_config(tmp_path, epochs=1))
    monkeypatch.setattr("training.losses.surface_loss", lambda probs, dist: torch.tensor(float("nan")))
    with pytest.raises(
        TrainingError, match=r"epoch 2: non-finite loss at step 1; .*last.pt holds epoch 1, the last"
    ):
        main(tiny_config(tmp_path, epochs=2, resume=str(tmp_path / "last.pt")))
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--epochs", "0"],
        ["--batch-size", "-2"],
        ["--lr", "0"],
        ["--lr", "nan"],
        ["--model", "resnet50"],
        ["--img-size", "400by640"],
        ["--img-size", "16x16"],
        ["--seed", "-1"],
    ],
)
def test_bad_flags_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_bad_resume_files_give_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    unknown = tmp_path / "unknown.pt"
    torch.save(
        {
            "model_name": "resnet",
            "model_config": {},
            "model_state": {},
            "preprocess": {},
            "img_size": [],
        },
        unknown,
    )
    cases = {
        tmp_path / "missing.pt": "checkpoint not found",
        corrupt: "corrupt or not a readable PyTorch checkpoint",
        foreign: "not a tiny-pupil-seg checkpoint",
        unknown: "unknown model 'resnet'",
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as exc:
            main(tiny_config(tmp_path / "out", resume=str(path)))
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.slow  # a subprocess; tests/test_faults.py runs such command lines too
def test_cli_reports_a_bad_resume_file_in_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "train_efficientvit.py",
            "--resume",
            str(tmp_path / "nope.pt"),
            "--no-mlflow",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert result.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'nope.pt'}"


def test_init_from_starts_a_new_run_from_the_weights(tmp_path):
    source = tmp_path / "source"
    main(tiny_config(source, max_steps=2))  # 2 epochs x 2 steps
    # a tiny learning rate: the first Adam step moves every weight by about lr, no more
    summary = main(
        tiny_config(
            tmp_path / "tuned",
            model=None,
            init_from=str(source / "last.pt"),
            epochs=1,
            max_steps=1,
            lr=1e-9,
            data=DataConfig(img_size=(32, 48), synthetic_train=4, synthetic_val=4),
        )
    )
    start, tuned = load_checkpoint(source / "last.pt"), load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert tuned["model_name"] == "tiny_efficientvit" and tuned["img_size"] == [32, 48]
    assert tuned["train_config"]["init_from"] == str((source / "last.pt").resolve())
    assert tuned["epoch"] == 1 and len(summary["history"]) == 1  # a run of its own, not a resume
    assert next(iter(tuned["optimizer_state"]["state"].values()))["step"] == 1  # a fresh optimiser
    weights = [k for k, v in start["model_state"].items() if v.is_floating_point() and "bn" not in k]
    assert max((tuned["model_state"][k] - start["model_state"][k]).abs().max() for k in weights) < 1e-6
    fresh = build_model("tiny_efficientvit").state_dict()
    assert any((fresh[k] - start["model_state"][k]).abs().max() > 1e-3 for k in weights)


def test_a_fine_tuned_run_resumes_from_its_own_weights(tmp_path):
    source, tuned = tmp_path / "source", tmp_path / "tuned"
    main(tiny_config(source, max_steps=1, epochs=1))
    main(tiny_config(tuned, model=None, init_from=str(source / "last.pt"), epochs=1, max_steps=1))
    first = load_checkpoint(tuned / "last.pt")
    summary = main(tiny_config(tuned, model=None, resume=str(tuned / "last.pt"), epochs=2, max_steps=1))
    last = load_checkpoint(tuned / "last.pt")
    assert last["epoch"] == 2 and len(summary["history"]) == 2  # the same run, one epoch on
    assert last["train_config"]["init_from"] == first["train_config"]["init_from"]
    with pytest.raises(ValueError, match="give only one"):
        main(tiny_config(tuned, model=None, init_from=str(source / "last.pt"), resume=str(tuned / "last.pt")))


def test_init_from_keeps_the_source_preprocessing(tmp_path):
    source = tmp_path / "source"
    main(tiny_config(source, max_steps=1, epochs=1, preprocess=PreprocessConfig(gamma=0.7)))
    tuned = tiny_config(tmp_path / "tuned", model=None, init_from=str(source / "best.pt"), epochs=1)
    main(dataclasses.replace(tuned, max_steps=1))
    assert load_checkpoint(tmp_path / "tuned" / "best.pt")["preprocess"]["gamma"] == 0.7


def test_init_from_refuses_another_model_and_bad_files(tmp_path):
    source = tmp_path / "source"
    main(tiny_config(source, max_steps=1, epochs=1))
    with pytest.raises(CheckpointError, match="holds a 'tiny_efficientvit' model, not 'shallownet'"):
        main(tiny_config(tmp_path / "out", model="shallownet", init_from=str(source / "best.pt")))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    for path, message in {corrupt: "corrupt", tmp_path / "missing.pt": "checkpoint not found"}.items():
        with pytest.raises(CheckpointError, match=message) as exc:
            main(tiny_config(tmp_path / "out", model=None, init_from=str(path)))
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_init_from_flags(capsys):
    assert parse_args(["--init-from", "a.pt"]).model is None  # the checkpoint's model
    assert parse_args(["--init-from", "a.pt", "--model", "shallownet"]).model == "shallownet"
    assert parse_args([]).model == "tiny_efficientvit"
    assert model_file("pretrained", ".pt").name == "tiny_efficientvit.pt"
    with pytest.raises(SystemExit):
        parse_args(["--init-from", "a.pt", "--resume", "b.pt"])
    assert "drop --init-from" in capsys.readouterr().err


def test_runs_from_before_synthetic_styles_keep_the_first_renderers_eyes(tmp_path):
    main(tiny_config(tmp_path, epochs=1, max_steps=1))
    path = tmp_path / "last.pt"
    state = load_checkpoint(path)
    assert ModelCard.from_checkpoint(state, path).train_style == "full"
    del state["train_config"]["data"]["synthetic_style"], state["train_style"]  # as before styles
    save_checkpoint(state, path)
    assert ModelCard.from_checkpoint(state, path).train_style == "narrow"
    main(tiny_config(tmp_path, epochs=2, max_steps=1, resume=str(tmp_path / "last.pt")))
    assert load_checkpoint(tmp_path / "last.pt")["train_config"]["data"]["synthetic_style"] == "narrow"


def test_weight_decay_reaches_the_optimiser_and_the_checkpoint(tmp_path):
    main(tiny_config(tmp_path, epochs=1, max_steps=1, weight_decay=0.05))
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["optimizer_state"]["param_groups"][0]["weight_decay"] == 0.05
    assert state["train_config"]["weight_decay"] == 0.05


def test_validation_changes_nothing_in_the_model():
    model = randomize_batchnorm(build_model("tiny_efficientvit_xs"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frames = EyeDataset(synthetic_frames(4, 0, (48, 64)), (48, 64), PreprocessConfig(), None, seed=0)
    metrics = run_epoch(model, DataLoader(frames, batch_size=2), CombinedLoss(), alpha=0.5, train=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics too
    assert {"val/loss", "val/pupil_iou", "val/images_per_s"} <= set(metrics)
    assert not any(k.startswith("train/") for k in metrics)


def test_a_training_step_on_compact_items_matches_one_on_full_width_targets():
    """The data path's CPU parity: loss and every gradient of a step on data.expand_batch's batch
    equal those on the float32 targets data.targets makes (distances differ by float16 rounding)."""
    frames = EyeDataset(synthetic_frames(2, 0, (48, 64)), (48, 64), PreprocessConfig(), None, seed=0)
    items = [frames[i] for i in range(2)]
    compact = expand_batch(default_collate(items), torch.device("cpu"), PreprocessConfig())
    labels = [frames.load(i)[1] for i in range(2)]
    full = {
        "image": torch.stack([torch.from_numpy(preprocess(frames.load(i)[0]))[None] for i in range(2)]),
        "label": torch.from_numpy(np.stack(labels).astype(np.int64)),
        "weight": torch.from_numpy(np.stack([boundary_weight(y) for y in labels])),
        "dist": torch.from_numpy(np.stack([distance_maps(y) for y in labels])),
    }
    model = randomize_batchnorm(build_model("tiny_efficientvit_xs")).train()
    results = []
    for batch in (compact, full):
        model.zero_grad()
        loss = CombinedLoss()(model(batch["image"]), batch, alpha=0.3)["total"]
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert full["label"].sum() > 0 and loss_a == pytest.approx(loss_b, rel=1e-4)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
