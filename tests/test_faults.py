"""What a hostile but realistic user meets: each fault gives a non-zero exit, one line on stderr
naming the file or value (never a traceback), and leaves every file of theirs as it was.

The table runs the real command lines in subprocesses on tiny settings (`slow`: CI runs them as a
step of their own); the in-process tests below it are fast and stay in the default suite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.runfolder import claim, new_run_folder
from data.synthetic import write_openeds
from models.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import tiny_config
from train_efficientvit import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--img-size", "48x64", "--synthetic-train", "8", "--synthetic-val", "4", "--batch-size", "4"]
TINY += ["--workers", "0", "--no-mlflow"]


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def cli(*args: str, cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}  # progress bars would fill stderr
    command = [sys.executable, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished two-epoch run's folder (last.pt, best.pt, curves, grids)."""
    folder = tmp_path_factory.mktemp("faults") / "run"
    main(tiny_config(folder, epochs=2, max_steps=1))
    return folder


@pytest.fixture(scope="module")
def eyes(tmp_path_factory) -> Path:
    return write_openeds(tmp_path_factory.mktemp("eyes") / "eyes", n=6, size=(48, 64), val_fraction=0.34)


def broken_copy(eyes: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the dataset with its last validation frame cut in half; and that frame."""
    copy = Path(shutil.copytree(eyes, tmp_path / "broken"))
    frame = sorted((copy / "validation" / "images").iterdir())[-1]
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    return copy, frame


TRAIN = ["train_efficientvit.py", *TINY]
CASES = {  # name: (command line, with {run} a finished run's folder and {tmp} a fresh one; exit; named)
    "another run's folder": ([*TRAIN, "--out-dir", "{run}"], 1, "--resume"),
    "unwritable out-dir": ([*TRAIN, "--out-dir", "{run}/best.pt/sub"], 1, "best.pt/sub"),
    "diverging lr": ([*TRAIN, "--lr", "1e6", "--out-dir", "{tmp}/d"], 1, "non-finite"),
    "negative early stop": (["train_efficientvit.py", "--early-stop", "-1"], 2, "--early-stop"),
    "resume to fewer epochs": (
        ["train_efficientvit.py", "--resume", "{run}/last.pt", "--epochs", "1"],
        1,
        "2 epochs",
    ),
    "huge frames": ([*TRAIN, "--img-size", "40000x40000", "--out-dir", "{tmp}/h"], 1, "40000x40000"),
    "opset below 18": (["export_onnx.py", "--checkpoint", "{run}/best.pt", "--opset", "11"], 2, "--opset"),
    "resume a missing file": (["train_efficientvit.py", "--resume", "{tmp}/nope.pt"], 1, "nope.pt"),
    "evaluate a text file": (["evaluate.py", "--checkpoint", "{run}/curves.png"], 1, "curves.png"),
    "predict a missing input": (["predict.py", "--input", "{tmp}/none", "--output", "{tmp}/o"], 1, "none"),
    "synthetic into a run": (["-m", "data.synthetic", "--out", "{run}", "--n", "2"], 1, "not empty"),
    "check a missing folder": (["-m", "data", "check", "{tmp}/none"], 1, "none"),
    "export a diverged run": (["export_onnx.py", "--checkpoint", "{tmp}/nan.pt"], 1, "non-finite"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_fault_is_one_line_and_changes_nothing(case, run, eyes, tmp_path):
    command, status, named = CASES[case]
    state = load_checkpoint(run / "best.pt")  # a diverged run's weights, for the case that wants them
    state["model_state"] = {k: v.float().fill_(float("nan")) for k, v in state["model_state"].items()}
    save_checkpoint(state, tmp_path / "nan.pt")
    before = checksums(run), checksums(eyes)
    result = cli(*(part.format(run=run, tmp=tmp_path) for part in command))
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert named in result.stderr.strip().splitlines()[-1], result.stderr
    assert (checksums(run), checksums(eyes)) == before


@pytest.mark.slow
def test_a_broken_frame_is_named_before_the_first_epoch_with_workers(eyes, tmp_path):
    data, frame = broken_copy(eyes, tmp_path)
    args = [
        *TINY[:-3],
        "--workers",
        "2",
        "--no-mlflow",
        "--data-dir",
        str(data),
        "--out-dir",
        str(tmp_path / "o"),
    ]
    result = cli("train_efficientvit.py", *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {frame}: empty, truncated or not a .png file"]
    assert "epoch 1" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigterm_keeps_the_last_epoch_and_prints_the_resume_command(tmp_path, workers):
    """SIGTERM to the whole process group, as Slurm and `docker stop` send it, DataLoader workers too."""
    out = tmp_path / "run"
    args = ["train_efficientvit.py", *TINY, "--workers", workers, "--epochs", "50", "--max-steps", "1"]
    process = subprocess.Popen(
        [sys.executable, *args, "--out-dir", str(out)], cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # into the next epoch, its workers running
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert f"Resume with: python train_efficientvit.py --resume {out / 'last.pt'} --max-steps 1" in stdout
    assert load_checkpoint(out / "last.pt")["epoch"] >= 1


# in-process, fast


def test_two_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    first, second = new_run_folder(tmp_path, "m"), new_run_folder(tmp_path, "m")
    assert first != second and first.is_dir() and second.is_dir()


def test_a_folder_in_use_is_refused(tmp_path):
    with (
        claim(tmp_path, resuming=False),
        pytest.raises(ValueError, match="in use by another training run"),
        claim(tmp_path, resuming=True),
    ):
        pass


def test_a_run_into_another_runs_folder_is_refused_and_changes_nothing(run):
    before = checksums(run)
    with pytest.raises(ValueError, match=f"{run} holds another run's last.pt: continue it with --resume"):
        main(tiny_config(run, epochs=1))
    assert checksums(run) == before


@pytest.mark.slow
def test_a_diverged_run_keeps_only_finite_checkpoints_and_fails_in_mlflow(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    main(tiny_config(tmp_path / "run", epochs=1, max_steps=1, mlflow=True, experiment="diverge"))
    real = torch.optim.Adam.step

    def poison(self, *args, **kwargs):  # the weights go non-finite, the loss of that step did not
        result = real(self, *args, **kwargs)
        for group in self.param_groups:
            group["params"][0].data.fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", poison)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(Exception, match=r"epoch 2: the run diverged.*last.pt holds epoch 1"):
        main(tiny_config(tmp_path / "run", epochs=2, max_steps=1, resume=str(last), mlflow=True))
    state = load_checkpoint(last)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model_state"].values())
    assert list(mlflow.search_runs(experiment_names=["diverge"])["status"]) == ["FAILED"]


@pytest.mark.slow
def test_mlflow_failing_mid_run_warns_once_and_training_goes_on(tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def gone(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(mlflow, "log_metrics", gone)
    summary = main(tiny_config(tmp_path / "run", epochs=2, max_steps=1, mlflow=True))
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run" / "curves.png").exists()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: MLflow")]
    assert len(warnings) == 1 and "tracking server went away" in warnings[0]


def test_a_moved_dataset_can_be_named_on_resume(eyes, tmp_path):
    data = Path(shutil.copytree(eyes, tmp_path / "data"))
    main(
        tiny_config(
            tmp_path / "run",
            epochs=1,
            max_steps=1,
            data=tiny_config(tmp_path).data.replace(data_dir=str(data)),
        )
    )
    last = str(tmp_path / "run" / "last.pt")
    with pytest.raises(ValueError, match="the run's data is still at"):
        main(
            tiny_config(
                tmp_path, epochs=2, resume=last, data=tiny_config(tmp_path).data.replace(data_dir=str(eyes))
            )
        )
    moved = data.rename(tmp_path / "moved")
    resumed = main(
        tiny_config(
            tmp_path,
            epochs=2,
            max_steps=1,
            resume=last,
            data=tiny_config(tmp_path).data.replace(data_dir=str(moved)),
        )
    )
    assert load_checkpoint(last)["train_config"]["data"]["data_dir"] == str(moved)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]


def test_weights_that_do_not_fit_their_model_are_one_line(run, tmp_path):
    state = load_checkpoint(run / "last.pt")
    state["model_state"] = {k: v[..., :1] if v.ndim else v for k, v in state["model_state"].items()}
    save_checkpoint(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"weights do not fit model 'tiny_efficientvit'") as error:
        main(tiny_config(tmp_path, resume=str(tmp_path / "last.pt"), epochs=3))
    assert "\n" not in str(error.value)


def test_the_header_check_names_a_cut_off_frame(eyes, tmp_path):
    from data import DataConfig, DataError
    from data.dataset import build_datasets

    data, frame = broken_copy(eyes, tmp_path)
    with pytest.raises(DataError, match=str(frame)):
        build_datasets(DataConfig(data_dir=str(data), img_size=(48, 64)), *tiny_extras(), seed=0)


def tiny_extras():
    from config import AugmentConfig, PreprocessConfig

    return PreprocessConfig(), AugmentConfig()


def test_npy_labels_are_checked_too(eyes, tmp_path):
    from data.frames import folder_frames, verify

    data = Path(shutil.copytree(eyes, tmp_path / "d"))
    label = sorted((data / "train" / "labels").iterdir())[0]
    label.write_bytes(b"")
    with pytest.raises(ValueError, match=str(label)):
        verify(folder_frames(data, "train"))
    np.save(label, np.zeros((48, 64), np.uint8))
    verify(folder_frames(data, "train"))


def test_checkpoints_get_the_permissions_of_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        path = save_checkpoint({"weights": torch.zeros(1)}, tmp_path / "a.pt")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_the_error_that_stopped_a_run_is_not_hidden_by_its_cleanup(tmp_path, monkeypatch, capsys):
    from training import loop as training

    real, saves = training.save_checkpoint, []

    def disk_full(*args, **kwargs):
        saves.append(1)
        if len(saves) > 2:  # epoch 1's last.pt and best.pt are written, epoch 2's are not
            raise OSError("No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "save_checkpoint", disk_full)
    monkeypatch.setattr("train_efficientvit.plot_curves", lambda *a, **k: disk_full())
    with pytest.raises(OSError, match="No space left on device"):
        main(tiny_config(tmp_path, epochs=2, max_steps=1))
    assert "warning: closing the run: No space left on device" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


class BrokenFrames(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        from data import DataError

        raise DataError(f"/eyes/{index}.png: truncated PNG (no IEND chunk at the end)")


def test_a_dataloader_workers_error_is_told_in_one_line():
    from core.errors import one_line

    with pytest.raises(ValueError) as error:  # DataError, carrying the worker's whole traceback
        next(iter(torch.utils.data.DataLoader(BrokenFrames(), num_workers=1)))
    assert "Original Traceback" in str(error.value)
    assert one_line(error.value) == "/eyes/0.png: truncated PNG (no IEND chunk at the end)"
    assert one_line(RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")) == "CUDA out of memory."


def test_a_second_interrupt_while_saving_is_ignored():
    from core.runfolder import no_second_interrupt

    before = signal.getsignal(signal.SIGINT)  # Python's default_int_handler, or SIG_IGN under nohup
    with no_second_interrupt():
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt outside
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_cut_off_npy_label_and_a_jpeg_with_trailing_bytes(eyes, tmp_path):
    from data.frames import folder_frames, verify

    data = Path(shutil.copytree(eyes, tmp_path / "d"))
    label = sorted((data / "train" / "labels").iterdir())[0]
    label.write_bytes(label.read_bytes()[:-100])  # a whole header, half the array
    with pytest.raises(ValueError, match=str(label)):
        verify(folder_frames(data, "train"))
    np.save(label, np.zeros((48, 64), np.uint8))
    image = sorted((data / "train" / "images").iterdir())[0]
    jpeg = image.with_suffix(".jpg")
    import cv2

    jpeg.write_bytes(cv2.imencode(".jpg", cv2.imread(str(image)))[1].tobytes() + b"camera trailer")
    image.unlink()
    verify(folder_frames(data, "train"))  # a decodable JPEG with bytes after its end is whole


# prediction: a run stopped by a signal writes what it measured


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_video_writes_the_frames_so_far_and_a_playable_video(tmp_path, stop):
    import json

    import cv2

    from tests.test_reliability import write_video

    video, out, dataset = write_video(tmp_path / "eye.avi", 3000), tmp_path / "out", tmp_path / "ds"
    args = ["predict.py", "--input", str(video), "--output", str(out), "--save-dataset", str(dataset)]
    process = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (out / ".overlay.partial.mp4").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stopped by {stop.name} after "), stderr
    frames = int(lines[0].split(" after ")[1].split()[0])
    assert 0 < frames < 3000
    with open(out / "pupil.csv") as f:
        assert sum(1 for _ in f) == frames + 1
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    assert int(cv2.VideoCapture(str(out / "overlay.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    assert (dataset / "confidence.csv").is_file() and (dataset / "validation").is_dir()


# several processes: a mistake is said once, before they start where it can be


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_processes_is_a_usage_error_before_any_starts():
    done = cli("train_efficientvit.py", "--nproc-per-node", "2", "--batch-size", "3", *TINY[:6])
    assert done.returncode == 2 and "Training" not in done.stdout
    assert (
        done.stderr.strip().splitlines()[-1].endswith("error: --batch-size 3 does not split over 2 processes")
    )


@pytest.mark.slow
def test_a_run_folder_in_use_is_refused_once_before_the_processes_start(run):
    before = checksums(run)
    done = cli("train_efficientvit.py", "--nproc-per-node", "2", *TINY, "--out-dir", str(run))
    assert done.returncode == 1 and "Training" not in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"error: {run} holds another run's last.pt: continue it with --resume {run / 'last.pt'}, "
        "or give another --out-dir"
    ]
    assert checksums(run) == before


@pytest.mark.slow
def test_under_torchrun_rank_0_alone_says_what_is_wrong():
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = [*torchrun, "train_efficientvit.py", "--no-such-flag"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert done.stderr.count("unrecognized arguments: --no-such-flag") == 1, done.stderr
