"""modal_app.py offline: the Modal declarations, the CLI, and the training path its GPU function runs.

No Modal token or network is needed: the declarations are read from the objects the decorators
build, and `run_training` (what the `train` function runs) is called with a temporary folder
standing in for the runs volume.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import modal
import pytest
import torch

import modal_app
from cloud import predict as modal_predict
from cloud import runs as modal_runs
from config import TrainConfig
from config.flags import flags, train_config
from data import DataError
from models.checkpoint import CheckpointError
from train_efficientvit import TrainingError, parse_args

ROOT = Path(__file__).resolve().parents[1]


def no_token_env(tmp_path: Path) -> dict[str, str]:
    """This environment without Modal credentials, so `modal run` can never reach an account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    return {**env, "MODAL_CONFIG_PATH": str(tmp_path / "no-modal.toml")}


def modal_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "modal", "run", *args]
    return subprocess.run(command, cwd=ROOT, env=no_token_env(tmp_path), capture_output=True, text=True)


def test_import_loads_neither_torch_nor_the_project():
    heavy = "{'torch', 'numpy', 'data', 'models', 'mlflow'}"
    code = f"import sys, modal_app; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_asks_for_a_gpu_both_volumes_a_day_and_retries():
    train = modal_app.TRAIN_FUNCTION
    assert train["gpu"] == "L4" and train["timeout"] == 24 * 60 * 60
    assert train["volumes"] == {
        PurePosixPath("/datasets"): modal_app.datasets_volume,
        PurePosixPath("/runs"): modal_app.runs_volume,
    }
    assert isinstance(train["retries"], modal.Retries)


def test_the_dataset_check_and_the_sweep_run_without_a_gpu():
    assert "gpu" not in modal_app.CHECK_FUNCTION and "gpu" not in modal_app.SWEEP_FUNCTION
    assert set(modal_app.CHECK_FUNCTION["volumes"]) == {modal_app.DATASETS_DIR}


def project_imports(path: Path) -> set[str]:
    """The modules of this repository that a Python file imports (top-level names)."""
    nodes = list(ast.walk(ast.parse(path.read_text())))
    names = {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    tops = {name.split(".")[0] for name in names}
    return {t for t in tops if (ROOT / f"{t}.py").exists() or (ROOT / t).is_dir()}


def test_the_image_carries_every_project_module_the_containers_import():
    shipped = set(modal_app.PROJECT_MODULES)
    files = [f for m in shipped for f in [ROOT / f"{m}.py", *(ROOT / m).glob("**/*.py")] if f.exists()]
    files.append(ROOT / "modal_app.py")  # every container imports it (Modal adds it itself)
    needed = {"data", "train_efficientvit", "export_onnx", "predict"}.union(
        *(project_imports(f) for f in files)
    )
    assert needed <= shipped, f"add to PROJECT_MODULES: {sorted(needed - shipped)}"
    assert all((ROOT / f"{m}.py").is_file() or (ROOT / m / "__init__.py").is_file() for m in shipped)


def top_imports(path: Path) -> set[str]:
    """The packages of this repository whose modules a Python file imports at its top level."""
    body = ast.parse(path.read_text()).body
    top = {n.module for n in body if isinstance(n, ast.ImportFrom) and n.module} | {
        a.name for n in body if isinstance(n, ast.Import) for a in n.names
    }
    names = {m.split(".")[0] for m in top}
    return {m for m in names if (ROOT / f"{m}.py").exists() or (ROOT / m).is_dir()}


def test_the_sweep_container_can_import_this_file():
    # it has no torch and no project but what the sweep image adds: what modal_app imports at the top
    assert top_imports(ROOT / "modal_app.py") == {"cloud", "config", "core"}
    for package in ("cloud", "config", "core"):  # what that image holds of the project, reports aside
        for module in (ROOT / package).glob("*.py"):
            assert top_imports(module) <= {"cloud", "config", "core"}, module
    assert {"config", "core", "cloud", "reports"} == set(modal_app.SWEEP_MODULES)
    assert modal_app.SWEEP_FUNCTION["image"] is modal_app.sweep_image


def test_main_is_the_default_entrypoint_and_shows_every_training_flag(tmp_path):
    assert isinstance(modal_app.main, modal.app.LocalEntrypoint)
    result = modal_cli(tmp_path, "modal_app.py", "--help")
    assert result.returncode == 0, result.stderr
    shown = set(re.findall(r"--[a-z][a-z-]*", result.stdout))
    local_only = {"--out-dir", "--resume", "--init-from", "--device"}
    training = {flag.name for flag in flags(TrainConfig)}
    assert training - local_only <= shown and not local_only & shown
    assert {"--run-name", "--gpu", "--models", "--lrs", "--seeds"} <= shown


def test_without_a_token_modal_run_says_to_run_modal_token_new(tmp_path):
    result = modal_cli(tmp_path, "modal_app.py")
    assert result.returncode != 0
    assert "modal token new" in result.stdout + result.stderr


def test_a_modal_run_has_the_settings_of_a_local_one_but_workers():
    [(values, _)], _ = modal_app.plan_runs({})
    assert values == {}  # nothing given: no setting is sent but what the user asked for
    modal = train_config(values, modal_app.TRAIN_FLAGS, modal_app.MODAL_DEFAULTS)
    assert modal == parse_args([]).replace(workers=modal_runs.DEFAULT_WORKERS)
    assert list(modal_app.ENTRYPOINT.parameters)[: len(modal_app.TRAIN_FLAGS)] == [
        f.key for f in flags(TrainConfig) if not f.field.metadata["local_only"]
    ]


def test_flags_become_the_settings_given():
    runs, sweep = modal_app.plan_runs(
        {"data_dir": "openeds", "img_size": "64x96", "epochs": 3, "model": "shallownet", "augment": False}
    )
    [(values, name)] = runs
    assert not sweep and name.startswith("shallownet-")
    assert values == {
        "data.data_dir": "/datasets/openeds",
        "data.img_size": (64, 96),
        "epochs": 3,
        "model": "shallownet",
        "augment.enabled": False,
    }
    assert modal_runs.dataset_path("/datasets/openeds/") == "/datasets/openeds"


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"img_size": "400"}, "argument --img-size: expected two values"),
        ({"img_size": "16x640"}, "argument --img-size: must be >= 32"),
        ({"lr": 0.0}, "argument --lr: must be > 0"),
        ({"data_dir": "../secrets"}, "must stay inside the datasets volume"),
        ({"data_dir": "/etc"}, "must be a folder in the datasets volume"),
        ({"run_name": "../escape"}, "run name '../escape' must be like"),
        ({"run_name": "/runs/abs"}, "run name '/runs/abs' must be like"),
        ({"models": "resnet50"}, "--models must be comma-separated names"),
        ({"lrs": "1e-3,fast"}, "--lrs must be comma-separated float"),
    ],
)
def test_bad_flags_are_one_line_errors_naming_the_flag(keywords, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        modal_app.plan_runs(keywords)


def tiny(epochs: int | None, **values) -> dict:
    """The settings of a tiny run as the entrypoint sends them: by dotted path, only those given."""
    small = {"batch_size": 4, "workers": 0, "mlflow": False, "max_steps": 2, "data.img_size": (48, 64)}
    small |= {"data.synthetic_train": 8, "data.synthetic_val": 4}
    return small | ({"epochs": epochs} if epochs else {}) | values


@pytest.fixture
def exports(monkeypatch) -> list[Path]:
    """Stands in for the ONNX export (tested on its own below, behind the slow marker)."""
    calls: list[Path] = []

    def export(run_dir: Path, calib_dir: str | None) -> dict:
        calls.append(run_dir)
        return {"path": str(run_dir / "best.onnx"), "summary": "exported"}

    monkeypatch.setattr(modal_app, "export_best", export)
    return calls


def test_run_training_commits_each_epoch_and_resumes_from_last_pt(tmp_path, exports):
    run_dir = tmp_path / "exp" / "run"
    commits: list[bool] = []
    first = modal_app.run_training(
        tiny(1), "exp/run", tmp_path, commit=lambda: commits.append((run_dir / "last.pt").exists())
    )
    assert first["out_dir"] == str(run_dir)
    assert commits == [True, True, True]  # after epoch 1 (checkpoints written), after training, after export
    second = modal_app.run_training(tiny(2), "exp/run", tmp_path)
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert len(second["epoch_seconds"]) == 1  # only epoch 2 ran: epoch 1 came from last.pt
    assert exports == [run_dir, run_dir] and second["onnx"]["summary"] == "exported"


def test_running_a_run_again_keeps_its_settings_and_refuses_others(tmp_path, exports):
    modal_app.run_training(tiny(2, lr=3e-3), "run", tmp_path)
    again = modal_app.run_training(tiny(None, lr=3e-3), "run", tmp_path)  # the same flags, no --epochs
    assert [h["epoch"] for h in again["history"]] == [1, 2]  # the run's own epochs: nothing more
    refused = modal_app.run_training(tiny(3, lr=1e-3), "run", tmp_path)  # returned: a retry repeats it
    assert refused == {
        "run_name": "run",
        "error": "ValueError: run run exists with other settings; drop --lr or name another run",
    }


def test_each_run_gets_its_own_mlflow_store_unless_a_server_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir, cwd = (tmp_path / "run").resolve(), Path.cwd()
    run_dir.mkdir()
    with modal_app.mlflow_store(tmp_path, "run") as uri:
        assert uri == os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{run_dir / 'mlflow.db'}"
        assert Path.cwd() == run_dir  # MLflow's artifacts go to ./mlruns: beside the store
    assert Path.cwd() == cwd and "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    with modal_app.mlflow_store(tmp_path, "run") as uri:
        assert uri == "https://mlflow.example.com" and Path.cwd() == cwd


ARTIFACT_REPOS = "mlflow.tracking._tracking_service.utils._artifact_repos_cache"  # MLflow's, per process


@pytest.mark.slow
def test_a_downloaded_run_shows_its_artifacts_in_mlflow(tmp_path, monkeypatch, exports):
    # as `modal volume get pupil-runs sweep .` then `mlflow ui --backend-store-uri
    # sqlite:///sweep/run/mlflow.db` from that folder: the volume's paths are gone
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    volume, download = tmp_path / "volume", tmp_path / "download"
    for epochs in (1, 2):  # the second resumes, in a fresh container: it logs beside the first
        monkeypatch.setattr(ARTIFACT_REPOS, {})
        modal_app.run_training(tiny(epochs, mlflow=True, experiment="sweep"), "sweep/run", volume)
    shutil.copytree(volume / "sweep", download / "sweep")
    shutil.rmtree(volume)
    monkeypatch.chdir(download)
    monkeypatch.setattr(ARTIFACT_REPOS, {})  # as in the fresh process of `mlflow ui`
    client = MlflowClient(tracking_uri="sqlite:///sweep/run/mlflow.db")
    [run] = client.search_runs(client.get_experiment_by_name("sweep").experiment_id)
    grids = [f.path for f in client.list_artifacts(run.info.run_id, "predictions")]
    assert grids == [f"predictions/predictions_epoch00{n}.png" for n in (1, 2)]
    best = client.download_artifacts(run.info.run_id, "checkpoints/best.pt", str(tmp_path))
    assert Path(best).read_bytes() == (download / "sweep" / "run" / "best.pt").read_bytes()


def test_a_failed_export_is_reported_not_raised(tmp_path):
    assert "best.pt" in modal_app.export_best(tmp_path, None)["error"]


@pytest.mark.slow
def test_a_finished_run_has_a_verified_onnx_beside_best_pt(tmp_path):
    summary = modal_app.run_training(tiny(1), "run", tmp_path)
    assert summary["onnx"].get("path") == str(tmp_path / "run" / "best.onnx"), summary["onnx"]
    assert (tmp_path / "run" / "best.onnx").exists()


OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


@pytest.mark.parametrize(
    "error, shown",
    [
        (TrainingError("epoch 3: non-finite loss"), "TrainingError: epoch 3: non-finite loss"),
        (torch.OutOfMemoryError(f"{OOM}\nGPU 0 has a total capacity of 22 GiB"), f"OutOfMemoryError: {OOM}"),
        (RuntimeError("CUDA error: out of memory"), "RuntimeError: CUDA error: out of memory"),
        (DataError("/datasets/x/1.png: not an image"), "DataError: /datasets/x/1.png: not an image"),
        (CheckpointError("last.pt: not a checkpoint"), "CheckpointError: last.pt: not a checkpoint"),
    ],
)
def test_a_failure_a_retry_would_repeat_is_returned_in_one_line(tmp_path, monkeypatch, error, shown):
    def main(config, on_epoch_end):
        raise error

    monkeypatch.setattr("train_efficientvit.main", main)
    commits: list[int] = []
    summary = modal_app.run_training(tiny(1), "run", tmp_path, commit=lambda: commits.append(1))
    assert summary == {"run_name": "run", "error": shown} and commits == [1]


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not on the other side")


def test_other_failures_are_raised_for_modal_to_retry_as_plain_runtime_errors(tmp_path, monkeypatch):
    def main(config, on_epoch_end):
        raise Unpicklable("volume went away\nmore")

    monkeypatch.setattr("train_efficientvit.main", main)
    with pytest.raises(RuntimeError) as raised:
        modal_app.run_training(tiny(1), "run", tmp_path)
    assert type(raised.value) is RuntimeError and str(raised.value) == "Unpicklable: volume went away"


def test_an_interrupted_run_commits_then_stops_so_the_retry_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr("train_efficientvit.main", lambda config, on_epoch_end: {"interrupted": True})
    commits: list[int] = []
    with pytest.raises(KeyboardInterrupt, match="resumes from"):
        modal_app.run_training(tiny(1), "run", tmp_path, commit=lambda: commits.append(1))
    assert commits == [1]


class FakeTrain:
    """Stands in for `train` on a GPU: records the calls, returns a summary per call; `failures`
    (run name -> what `train` gives back) fail some: a str is an error summary (a failure a retry
    would repeat), an exception what the call ends with after Modal's retries."""

    def __init__(self, failures: dict[str, str | Exception] | None = None) -> None:
        self.calls: list[tuple[dict, str]] = []
        self.failures = failures or {}

    def summary(self, config: dict, run_name: str) -> dict:
        self.calls.append((config, run_name))
        failure = self.failures.get(run_name)
        if isinstance(failure, Exception):
            raise failure
        if failure:
            return {"run_name": run_name, "error": failure}
        history = [
            {"epoch": 1, "val/pupil_iou": 0.5, "val/miou": 0.7},
            {"epoch": 2, "val/pupil_iou": 0.9, "val/miou": 0.95},
        ]
        onnx = {"summary": f"{run_name}/best.onnx: 220.1 KB"}
        return {
            "best_metric": 0.9,
            "best_epoch": 2,
            "history": history,
            "epoch_seconds": [30.0, 10.0, 12.0],
            "onnx": onnx,
        }

    def remote(self, config: dict, run_name: str) -> dict:
        return self.summary(config, run_name)

    def starmap(self, calls, return_exceptions: bool = False) -> list:
        assert return_exceptions  # one failed run must not lose the others' results
        results = []
        for call in calls:
            try:
                results.append(self.summary(*call))
            except Exception as exc:
                results.append(exc)
        return results


NAN_LOSS = "TrainingError: non-finite loss; the last good checkpoint is kept in /runs/"


def test_sweep_trains_the_cartesian_product_and_tabulates_every_run(monkeypatch, capsys):
    lost = modal.exception.ExecutionError("Could not deserialize remote exception due to local error:\nmore")
    failures = {"s1/shallownet-lr0.001-seed0": lost, "s1/shallownet-lr0.003-seed0": f"{NAN_LOSS}s1/x"}
    fake = FakeTrain(failures)
    monkeypatch.setattr(modal_app, "gpu_train", lambda gpu, secret: fake)
    runs, sweep = modal_app.plan_runs(
        {"models": "tiny_efficientvit,shallownet", "lrs": "1e-3,3e-3", "seeds": "0", "run_name": "s1"}
    )
    assert sweep and {values["experiment"] for values, _ in runs} == {"s1"}
    table = modal_app.sweep.local(runs, "L4", "")
    assert [name for _, name in fake.calls] == [
        f"s1/{m}-lr{lr}-seed0" for m in ("tiny_efficientvit", "shallownet") for lr in ("0.001", "0.003")
    ]
    assert {(c["model"], c["lr"], c["seed"]) for c, _ in fake.calls} == {
        (m, lr, 0) for m in ("tiny_efficientvit", "shallownet") for lr in (1e-3, 3e-3)
    }
    rows = table.splitlines()
    assert len(rows) == 2 + 4 and table in capsys.readouterr().out
    assert {row.count("|") for row in rows} == {9}
    assert rows[2].split(" | ")[1:] == ["tiny_efficientvit", "0.001", "0", "0.9000", "0.9500", "2", "12.0 |"]
    assert "| failed: ExecutionError: Could not deserialize remote exception due to local error: |" in rows[4]
    assert f"| failed: {NAN_LOSS}s1/x | | | |" in rows[5]


def test_main_trains_one_run_and_says_where_to_download_it(monkeypatch, capsys):
    fake = FakeTrain()
    monkeypatch.setattr(modal_app, "gpu_train", lambda gpu, secret: fake)
    modal_app.main.info.raw_f(epochs=3, model="shallownet", run_name="first", max_steps=5)
    [(config, run_name)] = fake.calls
    assert run_name == "first" and config == {"epochs": 3, "model": "shallownet", "max_steps": 5}
    out = capsys.readouterr().out
    assert "Best validation pupil IoU 0.9000 at epoch 2" in out and "first/best.onnx" in out
    assert "modal volume get pupil-runs first ." in out


def test_main_exits_with_a_failed_runs_error_in_one_line(monkeypatch, capsys):
    fake = FakeTrain({"first": f"{NAN_LOSS}first"})
    monkeypatch.setattr(modal_app, "gpu_train", lambda gpu, secret: fake)
    with pytest.raises(SystemExit) as stopped:
        modal_app.main.info.raw_f(run_name="first")
    assert stopped.value.code == f"error: run first failed: {NAN_LOSS}first"
    assert "modal volume get pupil-runs first ." in capsys.readouterr().out  # what it did is kept


def test_main_stops_on_a_bad_flag_before_anything_runs(monkeypatch):
    monkeypatch.setattr(modal_app, "gpu_train", lambda gpu, secret: pytest.fail("a GPU was asked for"))
    with pytest.raises(SystemExit, match="--img-size"):
        modal_app.main.info.raw_f(img_size="640")


def test_download_and_browse_hints_mirror_the_runs_volume(monkeypatch, capsys):
    # MLflow's artifact paths are relative to the volume's root: the download must mirror it
    hint = modal_app.where_to_find(["sweep-1/shallownet-lr0.001-seed0"], "")
    assert "modal volume get pupil-runs sweep-1 ." in hint
    assert "sqlite:///sweep-1/shallownet-lr0.001-seed0/mlflow.db" in hint
    monkeypatch.setattr(modal_app, "gpu_train", lambda gpu, secret: FakeTrain())
    modal_app.main.info.raw_f(run_name="team/run-3")
    out = capsys.readouterr().out
    assert "modal volume get pupil-runs team ." in out and "sqlite:///team/run-3/mlflow.db" in out


@pytest.mark.parametrize(("gpu", "count"), [("L4", 1), ("H100", 1), ("H100:4", 4), ("A100-80GB:2", 2)])
def test_gpu_takes_a_count_and_each_gpu_gets_its_cpus_and_memory(monkeypatch, gpu, count):
    asked = {}
    monkeypatch.setattr(
        modal_app, "train", type("Fake", (), {"with_options": lambda self, **o: asked.update(o)})()
    )
    modal_app.gpu_train(gpu, "")
    assert asked == {
        "gpu": gpu,
        "cpu": count * modal_app.TRAIN_CPU,
        "memory": count * modal_app.TRAIN_MEMORY_MB,
    }
    assert modal_app.TRAIN_CPU >= modal_runs.DEFAULT_WORKERS + 1  # the workers and the training process


@pytest.mark.parametrize("gpu", ["H100:0", "H100:x", ":4", "H100:4:2"])
def test_a_bad_gpu_spelling_is_refused_before_anything_runs(gpu):
    with pytest.raises(ValueError, match=f"--gpu '{gpu}' must be a GPU type, or TYPE:COUNT"):
        modal_app.plan_runs({"gpu": gpu})


@pytest.mark.slow
def test_several_gpus_train_one_process_each_and_rank_0_reports_and_exports(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    commits: list[int] = []
    summary = modal_app.train_on_gpus(
        2, tiny(1), "multi", runs_dir=tmp_path, commit=lambda: commits.append(1)
    )
    assert summary["run_name"] == "multi" and [h["epoch"] for h in summary["history"]] == [1]
    assert summary["onnx"]["path"] == str(tmp_path / "multi" / "best.onnx") and commits
    out = capfd.readouterr().out
    assert "on cpu x 2 processes" in out and out.count("epoch 1/1") == 1  # rank 0 alone prints


class FakeVolume:
    """Stands in for a modal.Volume: counts commits and reloads."""

    def __init__(self) -> None:
        self.commits = self.reloads = 0

    def commit(self) -> None:
        self.commits += 1

    def reload(self) -> None:
        self.reloads += 1


class LocalMap:
    """`predict_one.map` run here, one recording after another, exceptions returned as Modal does."""

    def __init__(self, function: modal.Function) -> None:
        self.function, self.names = function, []

    def map(self, names, kwargs: dict, return_exceptions: bool = False) -> list:
        assert return_exceptions  # one recording's failure must not lose the others' results
        results = []
        for name in names:
            self.names.append(name)
            try:
                results.append(self.function.local(name, **kwargs))
            except Exception as exc:
                results.append(exc)
        return results


@pytest.fixture
def sessions(tmp_path, monkeypatch):
    """A volume (tmp_path) whose folder `sessions` holds two videos, a Pupil Core recording and a
    file that is no video; the containers run here."""
    from data.synthetic import write_sequence
    from tests.test_pupil_core import pupil_core_recording

    folder = tmp_path / "sessions"
    pupil_core_recording(folder / "core", eyes=(0,))
    for name, seed in (("a", 1), ("b", 2)):
        video = write_sequence(tmp_path / f"seq{name}", 6, seed=seed, size=(96, 96), fps=30) / "eye.mp4"
        video.rename(folder / f"{name}.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video")
    monkeypatch.setattr(modal_predict, "RECORDINGS_DIR", PurePosixPath(tmp_path))
    monkeypatch.setattr(modal_app, "recordings_volume", FakeVolume())
    monkeypatch.setattr(modal_app, "predict_one", LocalMap(modal_app.predict_one))
    return folder


@pytest.mark.filterwarnings("ignore:The predict_.* function is executing locally:UserWarning")
def test_each_recording_runs_in_its_own_container_and_a_rerun_resumes(sessions, capsys):
    out = sessions.with_name("out")
    argv = ["--no-overlay", "--checkpoint", "pretrained"]
    first = modal_app.predict_batch.local(str(sessions), str(out), argv)
    assert modal_app.predict_one.names == ["a.mp4", "b.mp4", "broken.mp4", "core"]
    lines = first["table"].splitlines()
    assert lines[:2] == ["a.mp4: 6 frames", "b.mp4: 6 frames"] and lines[3] == "core: 20 frames"
    assert lines[2].startswith("broken.mp4: failed: ") and "cannot open as a video" in lines[2]
    assert lines[4] == "results: modal volume get pupil-recordings out .  (recordings.csv sums them up)"
    assert (out / "a" / "pupil.csv").is_file() and (
        out / "core" / "pupil_player" / "pupil_positions.csv"
    ).is_file()
    assert not (out / "a" / "overlay.mp4").exists()  # --flags reach every container
    rows = (out / "recordings.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["a", "b", "core/eye0"]
    assert modal_app.recordings_volume.commits == 4 + 1  # each container's, and the table's

    (sessions / "broken.mp4").unlink()  # fixed by the user; the finished ones are not run again
    modal_app.predict_one.names.clear()
    again = modal_app.predict_batch.local(str(sessions), str(out), argv)
    assert modal_app.predict_one.names == [] and again["table"].startswith("results: ")
    assert "3 recordings in" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:The predict_.* function is executing locally:UserWarning")
def test_a_batch_with_bad_flags_or_no_recordings_is_one_line(sessions, tmp_path):
    out = str(tmp_path / "out")
    bad = modal_app.predict_batch.local(str(sessions), out, ["--img-size", "7"])
    assert bad["error"].startswith("--flags: ") and "--img-size" in bad["error"] and "\n" not in bad["error"]
    abbreviated = modal_app.predict_batch.local(str(sessions), out, ["--ls", "--real"])  # argparse takes them
    assert abbreviated["error"] == "--flags: --lsl, --realtime is set here, not in --flags"
    assert modal_app.predict_batch.local(str(sessions), out, ["--help"])["error"].startswith("--flags: ")
    (tmp_path / "empty").mkdir()
    empty = modal_app.predict_batch.local(str(tmp_path / "empty"), out, [])
    assert empty["error"] == f"{tmp_path / 'empty'}: holds no videos or Pupil Core recording folders"
    assert modal_app.predict_one.names == []


def test_a_preempted_container_raises_so_modal_runs_it_again(sessions, monkeypatch):
    import predict

    monkeypatch.setattr(predict, "main", lambda argv: 143)  # stopped by SIGTERM, results partial
    with pytest.raises(KeyboardInterrupt, match="runs again"):
        modal_predict.predict_recording("a.mp4", sessions, sessions.with_name("out"), [], commit=lambda: None)
    assert not (sessions.with_name("out") / "a" / ".complete").exists()


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"input": "../elsewhere"}, "--input '../elsewhere': give a folder in the pupil-recordings volume"),
        ({"input": "s", "output": "s/out"}, "not inside --input"),
        ({"input": "s", "flags": "--lsl"}, "--flags: --lsl is set here, not in --flags"),
        ({"input": "s", "flags": "--fps '30"}, "No closing quotation"),
    ],
)
def test_the_predict_entrypoint_refuses_what_cannot_work_before_any_container(monkeypatch, keywords, message):
    monkeypatch.setattr(modal_app, "predict_batch", None)  # any container asked for fails
    with pytest.raises(SystemExit) as stopped:
        modal_app.predict_on_modal(**keywords)
    assert str(stopped.value.code).startswith("error: ") and message in str(stopped.value.code)


def test_the_predict_entrypoint_sends_the_plan_and_reports_a_failed_batch_in_one_line(monkeypatch):
    sent = []

    class Batch:
        def remote(self, *args):
            sent.append(args)
            return {"error": "/recordings/s: holds no videos or Pupil Core recording folders"}

    monkeypatch.setattr(modal_app, "predict_batch", Batch())
    with pytest.raises(SystemExit) as stopped:
        modal_app.predict_on_modal(input="s", flags="--img-size native", checkpoint="first/best.onnx")
    assert sent == [
        (
            "/recordings/s",
            "/recordings/s-predictions",
            ["--img-size", "native", "--checkpoint", "/runs/first/best.onnx"],
        )
    ]
    assert stopped.value.code == "error: /recordings/s: holds no videos or Pupil Core recording folders"
    on_runs = modal_predict.plan_prediction("s", checkpoint="/runs/first/best.onnx")[2]
    assert on_runs[-1] == "/runs/first/best.onnx"  # a path in the runs volume as it is mounted, too


def test_modal_run_finds_the_predict_entrypoint_and_still_trains_by_default(tmp_path):
    result = modal_cli(tmp_path, "modal_app.py::app.predict", "--help")
    assert result.returncode == 0, result.stderr
    assert {"--input", "--output", "--flags", "--checkpoint"} <= set(
        re.findall(r"--[a-z][a-z-]*", result.stdout)
    )
