"""Several processes: the sampler's shares, and torchrun with gloo matching one process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data.loading import EpochSampler
from models.checkpoint import load_checkpoint
from tests.conftest import tiny_config
from train_efficientvit import main
from training import distributed

ROOT = Path(__file__).resolve().parents[1]


def batches(sampler: EpochSampler, size: int) -> list[list[int]]:
    indices = [index for _, index in sampler]
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def test_the_ranks_batches_together_are_one_process_batches():
    one = EpochSampler(22, shuffle=True, seed=3, batch_size=8)
    ranks = [EpochSampler(22, shuffle=True, seed=3, batch_size=8, rank=r, world=2) for r in range(2)]
    for sampler in (one, *ranks):
        sampler.set_epoch(5)
    together = [sorted(a + b) for a, b in zip(*(batches(s, 4) for s in ranks), strict=True)]
    assert together == [sorted(batch) for batch in batches(one, 8)]
    assert len(together) == 2 == len(one) // 8  # the partial third batch is dropped everywhere
    assert [len(s) for s in ranks] == [8, 8]


def test_the_order_follows_seed_and_epoch_and_every_pair_carries_the_epoch():
    sampler = EpochSampler(10, shuffle=True, seed=1, batch_size=2)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert {epoch for epoch, _ in first} == {0} and {epoch for epoch, _ in second} == {1}
    assert [i for _, i in first] != [i for _, i in second]
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert sorted(i for _, i in first) == list(range(10))


def test_validation_shares_cover_every_frame_once():
    shares = [list(EpochSampler(7, shuffle=False, seed=0, batch_size=4, rank=r, world=2)) for r in range(2)]
    assert sorted(i for share in shares for _, i in share) == list(range(7))
    with pytest.raises(ValueError, match="rank 2"):
        EpochSampler(7, shuffle=False, seed=0, batch_size=4, rank=2, world=2)


def ranks_said(done: subprocess.CompletedProcess) -> str:
    """What the ranks wrote on stderr, without torchrun's own report of the failure (which ends it
    and would push the ranks' lines out of a short message)."""
    own = ("torch/distributed/", "torch.distributed.", "Traceback", "  File ", "    ", "=====", "-----")
    return "\n".join(line for line in done.stderr.splitlines() if not line.startswith(own))[-3000:]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_two_gloo_processes_train_and_resume_as_one_process_with_their_global_batch(tmp_path):
    settings = ["--batch-size", "4", "--workers", "0", "--no-mlflow", "--img-size", "48x64"]
    # 9 validation frames: shares of 5 and 4 frames, 3 and 2 batches; the ranks must not wait on each other
    settings += ["--synthetic-train", "12", "--synthetic-val", "9", "--model", "tiny_efficientvit_xs"]
    settings += ["--alpha-span", "2"]  # what a 2-epoch run has; a 1-epoch run would keep its own
    two = tmp_path / "two"
    first = torchrun("train_efficientvit.py", "--epochs", "1", *settings, "--out-dir", str(two))
    assert first.returncode == 0, ranks_said(first)
    assert "on cpu x 2 processes" in first.stdout and first.stdout.count("epoch 1/1") == 1  # rank 0 prints
    resumed = torchrun("train_efficientvit.py", "--resume", str(two / "last.pt"), "--epochs", "2")
    assert resumed.returncode == 0, ranks_said(resumed)
    data = {"img_size": (48, 64), "synthetic_train": 12, "synthetic_val": 9}
    config = tiny_config(tmp_path / "one", model="tiny_efficientvit_xs", epochs=2, alpha_span=2)
    main(config.replace(data=config.data.replace(**data)))

    a, b = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(two / "last.pt")
    assert len(b["history"]) == 2
    for one_epoch, two_epochs in zip(a["history"], b["history"], strict=True):
        assert two_epochs["train/loss"] == pytest.approx(one_epoch["train/loss"], rel=1e-4)
        assert two_epochs["val/loss"] == pytest.approx(one_epoch["val/loss"], rel=1e-3)
        assert two_epochs["val/miou"] == pytest.approx(one_epoch["val/miou"], abs=1e-3)
    diffs = torch.cat(
        [(a["model_state"][k] - b["model_state"][k]).abs().flatten().float() for k in a["model_state"]]
    )
    # Adam moves a weight whose gradient is ~0 by +-lr whatever its sign's rounding: a few such
    # weights differ by up to lr a step. The rest agree to within what float rounding, in the ranks'
    # averaged gradients and global BatchNorm statistics, grows to through Adam's normalised steps
    # (a median of 1-2e-5 measured with torch 2.14; weights a broken all-reduce leaves differ by 1e-2)
    assert diffs.max() <= 6 * 1e-3 and diffs.median() <= 1e-4


def rank_0_reports_rank_1_hangs() -> str:
    if distributed.rank() == 1:
        time.sleep(600)  # as a rank waiting on a collective rank 0 will never join
    return "rank 0's failure, returned"


def rank_0_is_interrupted() -> None:
    if distributed.rank() == 0:
        raise KeyboardInterrupt


@pytest.mark.slow
def test_launch_stops_the_other_ranks_once_rank_0_has_ended_and_returns_its_result(monkeypatch):
    monkeypatch.setattr(distributed, "GRACE_S", 1)
    start = time.monotonic()
    assert distributed.launch(2, rank_0_reports_rank_1_hangs, every_s=0.2) == "rank 0's failure, returned"
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_launch_passes_on_an_interrupted_rank_0_as_an_interrupt():
    with pytest.raises(KeyboardInterrupt, match="rank 0 was interrupted"):
        distributed.launch(2, rank_0_is_interrupted, every_s=0.2)
