"""Hostile inputs on the prediction side: each gets one clear line, and no silently wrong result."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from pathlib import Path

import numpy as np
import pytest

from data.folders import list_images, write_image
from predict import main as predict_main

ROOT = Path(__file__).resolve().parents[1]


def test_frames_are_in_natural_name_order(tmp_path):
    for i in (10, 2, 0, 1, 11, 9):
        write_image(tmp_path / f"frame_{i}.png", np.zeros((8, 8), np.uint8))
    assert [p.stem for p in list_images(tmp_path)] == [f"frame_{i}" for i in (0, 1, 2, 9, 10, 11)]


@pytest.mark.parametrize("fps", ["1e9", "1e-9", "0", "nan"])
def test_a_frame_rate_out_of_bounds_is_a_usage_error(tmp_path, capsys, fps):
    with pytest.raises(SystemExit) as stopped:
        predict_main(["--input", str(tmp_path), "--output", str(tmp_path / "out"), "--fps", fps])
    assert stopped.value.code == 2 and "--fps" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_synthetic_sequence_at_0_fps_is_a_usage_error(tmp_path, capsys):
    from data.synthetic.__main__ import main as synthetic_main

    with pytest.raises(SystemExit) as stopped:
        synthetic_main(["--sequence", "3", "--fps", "0", "--out", str(tmp_path / "eye")])
    assert stopped.value.code == 2
    assert "--fps: expected frames per second from 0.1 to 10000" in capsys.readouterr().err


def test_timeseries_png_gets_the_mode_the_umask_gives_every_other_output(tmp_path):
    from reports.timeseries import write_timeseries
    from tests.test_timeseries import recording

    old = os.umask(0o022)
    try:
        path = write_timeseries(tmp_path / "timeseries.png", *recording(), low_confidence=0.5)
        other = write_image(tmp_path / "mask.png", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(other.stat().st_mode) == 0o644


def test_an_mlflow_uri_with_a_password_never_shows_it(tmp_path, monkeypatch, capsys):
    from tests.conftest import tiny_config
    from train_efficientvit import main as train
    from training.mlflow_log import TrackingError, redacted

    assert (
        redacted("http://ann:s3cret@host:5000/x and https://bob:pw@h")
        == "http://***@host:5000/x and https://***@h"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ann:s3cret@127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    with pytest.raises(TrackingError) as failed:
        train(tiny_config(tmp_path / "run", mlflow=True, epochs=1))
    shown = str(failed.value) + capsys.readouterr().err
    assert "http://***@127.0.0.1:9" in shown and "s3cret" not in shown


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (1, 1000)])
def test_an_onnx_file_that_does_not_give_two_channels_is_refused_in_one_line(tmp_path, shape):
    import onnx
    from onnx import TensorProto, helper

    from inference import load_predictor
    from models.card import ModelFileError

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(shape))
    if len(shape) == 4:  # a segmentation net of three classes
        weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 1, 1, 1], [1.0, 2.0, 3.0])
        nodes, inits = [helper.make_node("Conv", ["image", "w"], ["out"])], [weight]
    else:  # a classifier
        weight = helper.make_tensor("w", TensorProto.FLOAT, [64, 1000], [0.0] * 64000)
        shaped = helper.make_tensor("s", TensorProto.INT64, [2], [1, 64])
        nodes = [
            helper.make_node("Reshape", ["image", "s"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["out"]),
        ]
        inits = [weight, shaped]
    graph = helper.make_graph(nodes, "g", [image], [out], inits)
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with pytest.raises(ModelFileError, match=r"a pupil model gives \(batch, 2, H, W\) logits") as refused:
        load_predictor(path, img_size=(8, 8), preprocess_config=None)
    assert "\n" not in str(refused.value)


def test_a_hidden_video_names_no_hidden_dataset_frames(tmp_path):
    from data.synthetic import write_sequence

    video = (write_sequence(tmp_path / "eye", 3, size=(64, 96)) / "eye.mp4").rename(tmp_path / ".eye.mp4")
    argv = ["--input", str(video), "--output", str(tmp_path / "out"), "--save-dataset", str(tmp_path / "ds")]
    assert predict_main(argv) == 0
    saved = sorted(p.name for p in (tmp_path / "ds").rglob("*.png"))
    assert saved and not any(name.startswith(".") for name in saved) and saved[0].startswith("eye_")


def test_predict_says_a_folders_frames_are_in_natural_name_order(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for i in (10, 9):
        write_image(tmp_path / "in" / f"frame_{i}.png", np.full((64, 64), 128, np.uint8))
    assert predict_main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 0
    assert "in natural name order (frame_9 before frame_10)" in capsys.readouterr().out
    with open(tmp_path / "out" / "pupil.csv") as f:
        assert [line.split(",")[0] for line in f][1:] == ["frame_9.png", "frame_10.png"]


def test_mlflow_is_told_the_folders_by_name_not_where_they_are(tmp_path, monkeypatch):
    import mlflow

    from tests.conftest import make_checkpoint, tiny_config
    from train_efficientvit import main as train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    home = tmp_path / "home" / "ann"
    source = make_checkpoint(home / "source.pt")
    config = tiny_config(home / "run", mlflow=True, epochs=1, max_steps=1, init_from=str(source), model=None)
    run = mlflow.get_run(train(config)["mlflow_run_id"])
    logged = {**run.data.params, **run.data.tags}
    assert run.data.tags["init_from"] == "source.pt" and run.data.params["out_dir"] == "run"
    assert not [key for key, value in logged.items() if str(home) in value]


def test_a_camera_index_no_machine_has_is_one_line(tmp_path, capsys):
    assert predict_main(["--input", "9" * 20, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: camera {'9' * 20}: no such camera (an index from 0 to 999)\n"


def test_jpeg_masks_are_named_and_why_they_are_not_taken(tmp_path):
    from data.folders import DataError, find_pairs

    for kind, suffix in (("images", ".png"), ("masks", ".jpg")):
        (tmp_path / "train" / kind).mkdir(parents=True)
        write_image(tmp_path / "train" / kind / f"x{suffix}", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"no label in .*masks \(x\.jpg is a JPEG: masks must be PNG or BMP"):
        find_pairs(tmp_path, "train")


def test_evaluate_asks_for_an_export_with_metadata_not_for_flags_it_lacks(tmp_path, capsys):
    import onnx

    from evaluate import main as evaluate_main
    from tests.conftest import PRETRAINED_ONNX

    model = onnx.load(PRETRAINED_ONNX)
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "nometa.onnx")
    assert evaluate_main(["--checkpoint", str(tmp_path / "nometa.onnx"), "--synthetic-n", "1"]) == 1
    err = capsys.readouterr().err
    assert "export the checkpoint it came from with export_onnx.py" in err and "--gamma" not in err


def test_ctrl_c_in_evaluate_is_one_line_and_exit_130(monkeypatch, capsys):
    import evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "evaluate", interrupted)
    assert evaluate.main(["--synthetic-n", "1"]) == 130
    assert capsys.readouterr().err == "interrupted: no report written\n"


@pytest.mark.parametrize("name", ["eye.tif", "eye.webp"])
def test_a_tiff_or_webp_input_is_read_as_an_image_not_a_video(tmp_path, name):
    import cv2

    from data.synthetic import render_eye

    frame = render_eye(0, 0, (96, 128))[0]
    image = frame.astype(np.uint16) << 4 if name.endswith(".tif") else frame  # 12-bit data in 16 bits
    assert cv2.imwrite(str(tmp_path / name), image)
    assert predict_main(["--input", str(tmp_path / name), "--output", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "pupil.csv") as f:
        assert [line.split(",")[0] for line in f][1:] == [name]  # a file name: an image, not video frame 0
    assert (tmp_path / "out" / "masks" / "eye.png").exists()


def test_links_that_lead_nowhere_in_an_input_folder_are_named_and_counted(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", np.full((64, 64), 128, np.uint8))
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    assert predict_main(["--input", str(folder), "--output", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"skipped: {folder / 'gone.png'}: its target is gone" in err
    assert f"skipped: {folder / 'loop.png'}: a symlink loop" in err
    assert "2 of 3 images could not be read" in err


def test_resuming_after_frames_were_added_in_place_says_so(tmp_path, capsys):
    import shutil

    from data.synthetic import write_openeds
    from tests.conftest import tiny_config
    from train_efficientvit import main as train

    root = write_openeds(tmp_path / "eyes", 6, seed=1, size=(48, 64), val_fraction=0.34)
    config = tiny_config(tmp_path / "run", epochs=1)
    train(config.replace(data=config.data.replace(data_dir=str(root))))
    for kind, suffix in (("images", ".png"), ("labels", ".npy")):
        first = sorted((root / "train" / kind).iterdir())[0]
        shutil.copy(first, first.with_name(f"added{suffix}"))
    capsys.readouterr()
    train(tiny_config(None, epochs=2).replace(out_dir=None, resume=str(tmp_path / "run" / "last.pt")))
    err = capsys.readouterr().err
    assert f"warning: {root} now holds {{'train': 5, 'validation': 2}} frames, but the run trained on" in err


def inverted_masks(root: Path) -> Path:
    """A mask-folder dataset whose masks are inverted: background white, the pupil black."""
    from data.synthetic import render_eye

    for split, seeds in (("train", (0, 1)), ("validation", (2,))):
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True)
        for seed in seeds:
            image, label = render_eye(seed, 0, (96, 128))[:2]
            write_image(root / split / "images" / f"f{seed}.png", image)
            write_image(
                root / split / "masks" / f"f{seed}.png", np.where(label == 3, 0, 255).astype(np.uint8)
            )
    return root


def test_data_check_names_masks_whose_pupil_covers_most_of_the_frame(tmp_path):
    from data import check_dataset

    report = check_dataset(inverted_masks(tmp_path / "ds"))
    assert not report.ok and "NOT USABLE" in report.format()
    assert any("f0.png: the pupil covers 9" in p and "an inverted mask" in p for p in report.problems)


def test_evaluate_warns_when_labels_cover_most_of_the_frame(tmp_path, capsys):
    from evaluate import main as evaluate_main

    assert evaluate_main(["--data-dir", str(inverted_masks(tmp_path / "ds"))]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 1 labels have a pupil covering over 30% of the frame (f2.png)" in err


@pytest.mark.parametrize("keep", [5_000, 100_000])
def test_init_from_a_checkpoint_cut_short_says_so_in_words(tmp_path, capsys, keep):
    from core.errors import one_line
    from models.checkpoint import CheckpointError
    from tests.conftest import PRETRAINED_PT
    from train_efficientvit import parse_args, settle

    cut = tmp_path / "copy.pt"
    cut.write_bytes(PRETRAINED_PT.read_bytes()[:keep])
    with pytest.raises(CheckpointError) as refused:  # what train_efficientvit.py prints after "error: "
        settle(parse_args(["--init-from", str(cut), "--epochs", "1"]))
    line = one_line(refused.value)
    assert f"a damaged PyTorch checkpoint ({keep:,} bytes, cut short or corrupted" in line
    assert "Errno" not in line and "(101)" not in line


def frames_folder(root: Path, n: int = 2) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        write_image(root / f"f{i}.png", np.full((64, 64), 128, np.uint8))
    return root


def test_predict_refuses_another_runs_results_unless_overwrite_which_clears_them(tmp_path, capsys):
    frames, out = frames_folder(tmp_path / "in"), tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "pupil.csv").write_text("another run's")
    (out / "masks" / "old.png").write_bytes(b"another run's mask")
    assert predict_main(["--input", str(frames), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{out} holds another run's results (pupil.csv, masks/): give a new --output, or --overwrite" in err
    )
    assert (out / "pupil.csv").read_text() == "another run's"
    assert predict_main(["--input", str(frames), "--output", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["f0.png", "f1.png"]  # no old mask left


def test_predict_never_writes_into_a_dataset_or_the_inputs_folder(tmp_path, capsys):
    split = tmp_path / "ds" / "validation"
    frames_folder(split / "images")
    frames_folder(split / "masks")
    before = {p.name: p.read_bytes() for p in (split / "masks").iterdir()}
    for output in (split, split / "images"):
        argv = ["--input", str(split / "images"), "--output", str(output), "--overwrite"]
        assert predict_main(argv) == 1
        assert (
            f"{output} holds the input {split / 'images'}: give an --output of its own"
            in capsys.readouterr().err
        )
    assert {p.name: p.read_bytes() for p in (split / "masks").iterdir()} == before


def test_two_predict_runs_never_share_a_folder(tmp_path, capsys):
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as held:  # as a live run holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert predict_main(["--input", str(frames_folder(tmp_path / "in")), "--output", str(out)]) == 1
    assert f"{out} is in use by another predict.py run (its .lock is held)" in capsys.readouterr().err
    assert not (out / "pupil.csv").exists()


def test_evaluate_refuses_another_runs_report_unless_overwrite(tmp_path, capsys):
    from evaluate import main as evaluate_main

    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    assert evaluate_main(["--synthetic-n", "1", "--output", str(out)]) == 1
    assert "holds another run's results (report.md)" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "my notes"
    assert evaluate_main(["--synthetic-n", "1", "--output", str(out), "--overwrite"]) == 0
    assert (out / "report.md").read_text() != "my notes"


def test_an_unwritable_save_dataset_is_found_before_the_first_frame(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "out"
    argv = ["--input", str(frames_folder(tmp_path / "in")), "--output", str(out)]
    assert predict_main([*argv, "--save-dataset", str(tmp_path / "a_file" / "ds")]) == 1
    assert "cannot write the run's files there" in capsys.readouterr().err
    assert not (out / "pupil.csv").exists()  # no frame was run


@contextlib.contextmanager
def disk_full_after(limit: int):
    """Writes past `limit` bytes of a file fail, as on a full disk (RLIMIT_FSIZE: EFBIG; Python
    ignores the SIGXFSZ that comes with it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_csv_that_does_not_fit_leaves_the_old_one_and_names_itself(tmp_path):
    from data.folders import write_csv

    path = tmp_path / "pupil.csv"
    path.write_text("the old one\n")
    rows = [{"a": "x" * 100}] * 100  # 10 kB
    with disk_full_after(4096), pytest.raises(OSError, match=f"^{path}: cannot write \\(File too large\\)$"):
        write_csv(path, ("a",), rows)
    assert path.read_text() == "the old one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pupil.csv"]  # no temporary file left


def test_predict_on_a_full_disk_stops_at_the_first_failed_write_and_names_it(tmp_path, capsys):
    frames, out = tmp_path / "in", tmp_path / "out"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):  # noise: an overlay PNG of 64x64 colour pixels takes more than 4 kB
        write_image(frames / f"f{i}.png", rng.integers(0, 255, (64, 64), np.uint8))
    with disk_full_after(4096):
        code = predict_main(["--input", str(frames), "--output", str(out), "--batch-size", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {out / 'overlays'}/f") and err[0].endswith(
        "cannot write (File too large)"
    )
    written = [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"]
    assert all(p.stat().st_size > 0 for p in written)  # no empty or cut-off file
    assert len(list((out / "overlays").iterdir())) == 0 and not (out / "pupil.csv").exists()


def write_video(path: Path, frames: int) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(frames):
        writer.write(np.full((64, 96, 3), 40 + i % 200, np.uint8))
    writer.release()
    return path


def test_a_stopped_run_writes_what_it_measured_and_says_it_is_incomplete(tmp_path, monkeypatch, capsys):
    import json

    import cv2

    from pipeline import run

    monkeypatch.setattr(run, "stop_signal", lambda: signal.SIGTERM)  # as after the first batch
    video, out, dataset = write_video(tmp_path / "eye.avi", 20), tmp_path / "out", tmp_path / "ds"
    argv = ["--input", str(video), "--output", str(out), "--batch-size", "4", "--save-dataset", str(dataset)]
    assert predict_main(argv) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    stopped = 'stopped by SIGTERM after 4 frames: their results are written, and summary.json says "complete"'
    assert err == [f"{stopped}: false"]
    with open(out / "pupil.csv") as f:
        assert [line.split(",")[0] for line in f][1:] == ["0", "1", "2", "3"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["stopped_by"] == "SIGTERM" and summary["frames"] == 4
    video_out = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(video_out.get(cv2.CAP_PROP_FRAME_COUNT)) == 4  # closed properly: playable
    assert not list(out.glob(".*partial*"))
    assert (dataset / "confidence.csv").is_file() and len(
        list((dataset / "validation" / "images").iterdir())
    ) == 1


def test_a_full_disk_under_the_overlay_video_is_one_line_not_a_warning_per_frame(
    tmp_path, monkeypatch, capsys
):
    import shutil

    full = shutil.disk_usage(tmp_path)._replace(free=0)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: full)  # OpenCV's writer would not say
    out = tmp_path / "out"
    assert predict_main(["--input", str(write_video(tmp_path / "eye.avi", 5)), "--output", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {out / 'overlay.mp4'}: cannot write (No space left on device)"
    ]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # no video, partial or whole, no pupil.csv


def test_the_first_signal_asks_for_a_stop_a_second_stops_at_once_and_an_ignored_one_stays_ignored():
    from core.runfolder import stop_on_signals, stop_signal

    with stop_on_signals():
        assert stop_signal() is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop_signal() is signal.SIGTERM  # asked, not raised: the loop writes what it has
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert stop_signal() is None
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_hidden_dangling_link_is_no_frame(tmp_path):
    from pipeline.streams import image_files

    for i in (1, 2):
        write_image(tmp_path / f"frame_{i}.png", np.zeros((8, 8), np.uint8))
    (tmp_path / ".#frame_1.png").symlink_to(tmp_path / "gone")  # an editor's lock
    failures: list[Path] = []
    assert [p.name for p in image_files(tmp_path, failures)] == [
        "frame_1.png",
        "frame_2.png",
    ] and not failures


def test_a_video_writer_that_cannot_open_is_one_line(tmp_path, monkeypatch):
    import cv2

    from pipeline.streams import VideoOut

    class Closed:
        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return False

    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    video = VideoOut(tmp_path / "overlay", 30.0)
    with pytest.raises(OSError, match="OpenCV can write neither mp4v nor MJPG video here"):
        video.write(np.zeros((8, 8, 3), np.uint8))
    video.close(keep=False)  # as a failed run's cleanup does: nothing to close, no AttributeError
