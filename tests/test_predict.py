"""Prediction: pupil geometry, model input as in training, frames mapped back, the CLI, bad input.

Pupils are found with the shipped pretrained ONNX file (no export here); the .pt path runs a small
hand-made checkpoint; what needs a known answer runs a stand-in logits function."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from torch.utils.data import default_collate

from config import PupillometryConfig
from data import EyeDataset, PreprocessConfig, expand_batch, synthetic_frames
from data.dataset import resize_pair
from data.folders import find_pairs
from data.preprocess import Fit
from data.synthetic import render_eye
from inference import Predictor, load_predictor, prepare_batch, pupil_geometry
from models.card import ModelCard
from models.checkpoint import save_checkpoint
from pipeline.recording import GEOMETRY, csv_columns
from pipeline.run import predict, video_fps
from predict import main
from tests.conftest import (
    EASY,
    PRETRAINED_ONNX,
    SMALL,
    diverged_checkpoint,
    diverged_onnx,
    make_checkpoint,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("predict") / "model.pt")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A folder of three easy synthetic 100x160 frames, pupils in view, larger than SMALL."""
    folder = tmp_path_factory.mktemp("frames")
    for i in range(3):
        cv2.imwrite(str(folder / f"eye{i}.png"), render_eye(5, i, (100, 160), style=EASY)[0])
    return folder


def without_metadata(path: Path, *, static: tuple[int, int] | None = None) -> Path:
    """The pretrained ONNX file without this project's metadata, as other exporters write them;
    with `static`, its input and output fixed at that (H, W), as most exporters fix them."""
    model = onnx.load(PRETRAINED_ONNX)
    del model.metadata_props[:]
    for value in (*model.graph.input, *model.graph.output) if static else ():
        for dim, size in zip(value.type.tensor_type.shape.dim[2:], static, strict=True):
            dim.dim_value = size  # replaces the dynamic height and width's names
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def bare_onnx(tmp_path_factory):
    """A metadata-less ONNX file of a fixed 256x416 input."""
    return without_metadata(tmp_path_factory.mktemp("bare") / "bare.onnx", static=(256, 416))


def test_an_onnx_file_of_any_size_without_metadata_needs_its_input_size(tmp_path, frames, capsys):
    bare = without_metadata(tmp_path / "any.onnx")
    args = ["--checkpoint", bare, "--input", frames, "--output", tmp_path / "out", "--gamma", "0.8"]
    code, _, err = run_cli(capsys, *args)
    assert code == 1 and "its input size must be given" in err and "--img-size HxW" in err
    assert run_cli(capsys, *args, "--img-size", "256x416")[0] == 0


def stand_in(run, img_size=SMALL) -> Predictor:
    """A Predictor around a logits function, (B, 1, H, W) -> (B, 2, H, W), instead of a model."""
    return Predictor(run, ModelCard("tiny_efficientvit", {}, img_size), Path(__file__), "stand-in")


def dark_is_pupil(batch: np.ndarray) -> np.ndarray:
    """Logits that call every dark input pixel pupil."""
    x = batch[:, 0]
    return np.stack([x, -x], axis=1) * 20


def no_pupil(batch: np.ndarray) -> np.ndarray:
    """Logits that see no pupil anywhere."""
    background = np.full_like(batch[:, 0], 9.0)
    return np.stack([background, np.zeros_like(background)], axis=1)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_geometry_of_a_drawn_ellipse():
    mask = np.zeros((200, 300), np.uint8)
    cv2.ellipse(mask, ((140.5, 90.25), (80, 50), 30), 1, -1)
    g = pupil_geometry(mask.astype(bool), np.full(mask.shape, 0.8, np.float32))
    assert g["found"]
    assert abs(g["centre_x"] - 140.5) < 0.5 and abs(g["centre_y"] - 90.25) < 0.5
    assert abs(g["axis_major"] - 80) < 2 and abs(g["axis_minor"] - 50) < 2
    assert abs(g["angle"] - 30) < 2
    assert abs(g["area_px"] - math.pi * 40 * 25) < 0.05 * g["area_px"]  # outline pixels count too
    assert g["mean_prob"] == pytest.approx(0.8)


def test_geometry_reports_the_major_axis_angle():
    mask = np.zeros((200, 200), np.uint8)
    cv2.ellipse(mask, ((100, 100), (40, 90), 10), 1, -1)  # second axis is the major one
    assert abs(pupil_geometry(mask.astype(bool))["angle"] - 100) < 2


def test_geometry_uses_the_largest_component():
    mask = np.zeros((100, 100), bool)
    mask[10:14, 10:14] = True
    cv2.circle(mask.view(np.uint8), (60, 70), 15, 1, -1)
    g = pupil_geometry(mask)
    assert abs(g["centre_x"] - 60) < 0.5 and abs(g["centroid_y"] - 70) < 0.5
    assert math.isnan(g["mean_prob"])  # no probability map given


def test_geometry_of_a_tiny_blob_falls_back_to_the_centroid():
    mask = np.zeros((20, 20), bool)
    mask[5, 7:9] = True
    g = pupil_geometry(mask)
    assert g["found"] and (g["centre_x"], g["centre_y"]) == (7.5, 5.0) and g["area_px"] == 2


def test_geometry_without_pupil():
    g = pupil_geometry(np.zeros((20, 20), bool))
    assert not g["found"] and all(math.isnan(v) for k, v in g.items() if k != "found")


def test_model_input_is_what_training_sees():
    eyes = synthetic_frames(1, seed=3, size=(100, 150))
    dataset = EyeDataset(eyes, SMALL, PreprocessConfig(gamma=0.7), augment_config=None, seed=0)
    batch = prepare_batch([eyes.read(0)[0]], SMALL, PreprocessConfig(gamma=0.7))
    seen = expand_batch(default_collate([dataset[0]]), torch.device("cpu"), PreprocessConfig(gamma=0.7))
    np.testing.assert_array_equal(batch[0], seen["image"][0].numpy())  # after the device's normalising


def test_probabilities_come_back_at_each_frame_size(checkpoint):
    predictor = load_predictor(checkpoint)
    images = [render_eye(1, 0, (100, 160))[0], render_eye(1, 1, SMALL)[0]]
    for tta in (False, True):
        probs = predictor.probabilities(images, tta=tta)
        assert [p.shape for p in probs] == [(100, 160), SMALL]
        assert all(p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1 for p in probs)


def test_tta_averages_with_the_mirrored_prediction_mirrored_back():
    ramp = np.linspace(
        -3, 3, SMALL[1], dtype=np.float32
    )  # pupil logit grows left to right, whatever the input

    def run(batch):
        return np.stack([np.zeros_like(batch[:, 0]), np.broadcast_to(ramp, batch[:, 0].shape)], axis=1)

    predictor = stand_in(run)
    image = render_eye(1, 2, SMALL)[0]
    plain = 1 / (1 + np.exp(-ramp))
    np.testing.assert_allclose(predictor.probabilities([image])[0][0], plain, atol=1e-6)
    np.testing.assert_allclose(
        predictor.probabilities([image], tta=True)[0][0], (plain + plain[::-1]) / 2, atol=1e-6
    )


@pytest.mark.parametrize("shape, centre", [((200, 200), (130, 70)), ((480, 640), (400, 150))])
@pytest.mark.parametrize("tta", [False, True])
def test_predictions_map_back_onto_the_frames_own_pixels(shape, centre, tta):
    frame = np.full(shape, 200, np.uint8)
    cv2.circle(frame, centre, shape[0] // 10, 20, thickness=-1)
    prob = stand_in(dark_is_pupil).probabilities([frame], tta=tta)[0]
    assert prob.shape == shape
    g = pupil_geometry(prob > 0.5)
    assert math.hypot(g["centre_x"] - centre[0], g["centre_y"] - centre[1]) < 1.0
    assert abs(g["axis_major"] - 2 * shape[0] / 10) < 0.1 * shape[0] / 5


def test_folder_gives_masks_painted_overlays_and_csv(frames, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--checkpoint", PRETRAINED_ONNX, "--input", frames, "--output", tmp_path)
    assert code == 0 and "frames/s" in out and "onnxruntime" in out and err == ""
    rows = read_csv(tmp_path / "pupil.csv")
    assert list(rows[0]) == list(csv_columns(PupillometryConfig()))
    assert [r["frame"] for r in rows] == ["eye0.png", "eye1.png", "eye2.png"]
    assert [float(r["time_s"]) for r in rows] == pytest.approx(
        [0, 1 / 30, 2 / 30], abs=1e-6
    )  # a folder: 30 fps
    assert read_csv(tmp_path / "blinks.csv") == [] and (tmp_path / "blinks.csv").read_text().startswith(
        "start_frame"
    )
    assert cv2.imread(str(tmp_path / "timeseries.png")) is not None
    for name in ("eye0", "eye1", "eye2"):
        mask = cv2.imread(str(tmp_path / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(tmp_path / "overlays" / f"{name}.png")).astype(int)
        assert mask.shape == (100, 160) and overlay.shape == (100, 160, 3) and mask.any()
        tint = overlay[mask > 0]
        assert (tint[:, 2] > tint[:, 0] + 20).mean() > 0.9  # the pupil tinted red (BGR)
        away = cv2.dilate(mask, np.ones((11, 11), np.uint8)) == 0
        assert (overlay[away] == overlay[away][:, :1]).all()  # the rest stays grey


def test_pretrained_model_finds_the_pupil_centre(tmp_path, capsys):
    """Open eyes: fitted centre within 2 px of the generator's (closed eyes: the next test)."""
    truth = {}
    for index in range(40):
        image, _, info = render_eye(21, index, (96, 160), style=EASY)
        if info["pupil_visible_fraction"] > 0.95 and len(truth) < 6:
            cv2.imwrite(str(tmp_path / f"{index:03d}.png"), image)
            truth[f"{index:03d}.png"] = info["pupil_center"]
    assert len(truth) == 6
    code, _, _ = run_cli(
        capsys, "--checkpoint", PRETRAINED_ONNX, "--input", tmp_path, "--output", tmp_path / "out"
    )
    assert code == 0
    for row in read_csv(tmp_path / "out" / "pupil.csv"):
        centre = truth[row["frame"]]
        assert row["pupil_found"] == "1" and float(row["confidence"]) > 0.5, row
        assert math.hypot(float(row["centre_x"]) - centre[0], float(row["centre_y"]) - centre[1]) < 2.0, row


def test_no_pupil_gives_empty_numbers_a_black_mask_and_a_plain_overlay(tmp_path):
    """As for a closed eye; made with a stand-in model, as the pretrained one sees a pupil in some
    synthetic closed eyes."""
    folder = tmp_path / "in"
    folder.mkdir()
    shut = render_eye(5, 0, (100, 160), style=EASY)[0]
    cv2.imwrite(str(folder / "shut.png"), shut)
    summary = predict(stand_in(no_pupil), folder, tmp_path)
    assert summary.frames == 1
    (row,) = read_csv(tmp_path / "pupil.csv")
    assert row["pupil_found"] == "0" and row["confidence"] == "0.0" and row["blink"] == "1"
    assert all(
        row[column] == "" for column in GEOMETRY + ("diameter_filtered_px", "diameter_interpolated_px")
    )
    assert not cv2.imread(str(tmp_path / "masks" / "shut.png"), cv2.IMREAD_UNCHANGED).any()
    overlay = cv2.imread(str(tmp_path / "overlays" / "shut.png"))
    assert (overlay == shut[..., None]).all()


def test_model_flag_still_works_with_a_deprecation_note(checkpoint, frames, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--model", checkpoint, "--input", frames, "--output", tmp_path / "a")
    assert code == 0 and "model.pt (pytorch)" in out
    assert err == "--model is deprecated, use --checkpoint\n"
    code, _, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", frames, "--output", tmp_path / "b")
    assert code == 0 and err == ""


def test_inputs_sharing_a_stem_keep_separate_outputs(checkpoint, frames, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    eye = cv2.imread(str(frames / "eye0.png"), cv2.IMREAD_GRAYSCALE)
    inputs = ["a.jpg", "a.png", "a.png.png", "b.png"]  # a.png.png's stem is a.png's name
    for name in inputs:
        cv2.imwrite(str(folder / name), eye)
    code, _, _ = run_cli(capsys, "--checkpoint", checkpoint, "--input", folder, "--output", tmp_path / "out")
    assert code == 0
    assert [r["frame"] for r in read_csv(tmp_path / "out" / "pupil.csv")] == inputs
    for kind in ("masks", "overlays"):
        names = sorted(p.name for p in (tmp_path / "out" / kind).iterdir())
        assert names == [f"{name}.png" for name in inputs]


def test_video_gives_overlay_video_and_csv(checkpoint, tmp_path, capsys):
    video = tmp_path / "eyes.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 100))
    for i in range(4):
        writer.write(cv2.cvtColor(render_eye(6, i, (100, 160))[0], cv2.COLOR_GRAY2BGR))
    writer.release()
    code, out, err = run_cli(
        capsys, "--checkpoint", checkpoint, "--input", video, "--output", tmp_path / "out", "--masks"
    )
    assert code == 0 and "4 frames" in out and err == ""  # all the frames its header announces
    assert [r["frame"] for r in read_csv(tmp_path / "out" / "pupil.csv")] == ["0", "1", "2", "3"]
    assert len(list((tmp_path / "out" / "masks").iterdir())) == 4
    capture = cv2.VideoCapture(str(tmp_path / "out" / "overlay.mp4"))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    code, *_ = run_cli(
        capsys, "--checkpoint", checkpoint, "--input", video, "--output", tmp_path / "bare", "--no-overlay"
    )
    assert code == 0 and len(read_csv(tmp_path / "bare" / "pupil.csv")) == 4
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == [
        ".lock",
        "blinks.csv",
        "pupil.csv",
        "summary.json",
        "timeseries.png",
    ]


def test_truncated_video_is_processed_as_far_as_it_decodes_with_a_warning(checkpoint, tmp_path, capsys):
    video = tmp_path / "eyes.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(10):  # noise: every MJPG frame about the same size
        writer.write(np.random.default_rng(i).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])  # the header still says 10
    code, out, err = run_cli(
        capsys, "--checkpoint", checkpoint, "--input", video, "--output", tmp_path / "out"
    )
    read = len(read_csv(tmp_path / "out" / "pupil.csv"))
    assert code == 0 and 0 < read < 10 and f"{read} frames" in out
    assert err == (
        f"warning: {video}: read {read} of the 10 frames the header announces; the file may be truncated\n"
    )


def test_onnx_without_metadata_asks_for_preprocessing(bare_onnx, frames, tmp_path, capsys):
    code, _, err = run_cli(capsys, "--checkpoint", bare_onnx, "--input", frames, "--output", tmp_path / "out")
    assert code == 1 and err.count("\n") == 1
    assert (
        "no tiny-pupil-seg metadata" in err and "--gamma, --clahe-clip, --clahe-tiles, --mean, --std" in err
    )
    args = ["--checkpoint", bare_onnx, "--input", frames, "--output", tmp_path / "out", "--gamma", "0.8"]
    code, _, _ = run_cli(capsys, *args)
    assert code == 0  # the input size comes from the file's static input shape


def test_img_size_must_match_a_static_onnx_input(bare_onnx, frames, tmp_path, capsys):
    args = ["--checkpoint", bare_onnx, "--input", frames, "--output", tmp_path / "out", "--gamma", "0.8"]
    code, _, err = run_cli(capsys, *args, "--img-size", "100x120")
    assert code == 1 and err.count("\n") == 1
    assert str(bare_onnx) in err and "100x120" in err and "256x416" in err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--img-size", "0x0", "at least 32x32"),
        ("--img-size", "400", "HxW"),
        ("--clahe-tiles", "0x8", "argument --clahe-tiles: must be >= 1"),
        ("--clahe-tiles", "8", "expected two values like"),
        ("--gamma", "-1", "argument --gamma: must be > 0"),
        ("--batch-size", "0", "positive integer"),
        ("--threshold", "1.5", "between 0 and 1"),
    ],
)
def test_bad_numbers_are_argparse_errors(frames, tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exc:
        main(["--input", str(frames), "--output", str(tmp_path), flag, value])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_an_unreadable_image_is_named_and_keeps_its_place(checkpoint, frames, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in frames.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "eye1.png").write_bytes(b"not a png")  # the middle frame of three
    code, _, err = run_cli(
        capsys, "--checkpoint", checkpoint, "--input", folder, "--output", tmp_path / "out", "--fps", "10"
    )
    assert code == 0
    assert str(folder / "eye1.png") in err and "1 of 3 images could not be read" in err
    rows = read_csv(tmp_path / "out" / "pupil.csv")
    # the frame after it is at 0.2 s, where it was recorded, not at 0.1 s
    assert [(r["frame"], float(r["time_s"]), r["pupil_found"]) for r in rows] == [
        ("eye0.png", 0.0, "1"), ("eye1.png", 0.1, "0"), ("eye2.png", 0.2, "1"),
    ]  # fmt: skip
    assert not (tmp_path / "out" / "masks" / "eye1.png").exists()


def write_garbage(path):
    path.write_bytes(b"\x00garbage")
    return path


def write_unknown_model(path):
    state = {
        "model_name": "resnet50",
        "model_config": {},
        "model_state": {},
        "preprocess": {},
        "img_size": [1, 1],
    }
    return save_checkpoint(state, path)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda d: d / "missing.onnx", "model file not found"),
        (lambda d: d / "missing.pt", "checkpoint not found"),
        (lambda d: write_garbage(d / "model.onnx"), "not a loadable ONNX model"),
        (lambda d: write_garbage(d / "model.pt"), "corrupt or not a readable PyTorch checkpoint"),
        (lambda d: write_unknown_model(d / "model.pt"), "unknown model 'resnet50'"),
        (lambda d: diverged_checkpoint(d / "model.pt"), "holds non-finite weights (1 tensor"),
        (lambda d: diverged_onnx(d / "model.onnx"), "holds non-finite weights (1 tensor"),
    ],
    ids=["missing-onnx", "missing-pt", "corrupt-onnx", "corrupt-pt", "unknown-model", "nan-pt", "nan-onnx"],
)
def test_bad_model_is_one_line_error(frames, tmp_path, capsys, model, message):
    path = model(tmp_path)
    code, _, err = run_cli(capsys, "--checkpoint", path, "--input", frames, "--output", tmp_path / "out")
    assert code == 1 and err.count("\n") == 1 and message in err and str(path) in err


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "nothing-here", "no such file or folder"),
        (lambda d: write_garbage(d / "eyes.mp4"), "cannot open as a video"),
        (lambda d: write_garbage(d / "eye.png"), "none of its 1 images could be read"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no images"),
    ],
    ids=["missing", "bad-video", "bad-image", "empty-folder"],
)
def test_bad_input_is_one_line_error(checkpoint, tmp_path, capsys, make_input, message):
    path = make_input(tmp_path)
    code, _, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", path, "--output", tmp_path / "out")
    assert code == 1 and message in err and str(path) in err.splitlines()[-1]


def test_camera_without_display_is_a_clear_error(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, _, err = run_cli(capsys, "--checkpoint", checkpoint, "--input", "0", "--output", tmp_path)
    assert code == 1 and err.count("\n") == 1 and "needs a display" in err


def test_fit_keeps_the_aspect_ratio_and_centres_the_frame():
    assert Fit.of((200, 200), (400, 640)) == Fit(0, 120, 400, 400)  # a crop: bands left and right
    assert Fit.of((480, 640), (400, 640)) == Fit(0, 53, 400, 533)  # a webcam frame
    assert Fit.of((400, 640), (400, 640)) == Fit(0, 0, 400, 640)
    assert Fit.of((100, 640), (400, 640)) == Fit(150, 0, 100, 640)  # a wide strip: bands above and below


def test_image_and_label_are_padded_alike():
    image = np.full((60, 60), 50, np.uint8)
    label = np.zeros((60, 60), np.uint8)
    image[:, -6:], label[:, -6:] = 200, 1  # a pupil-like column along the right edge
    big_image, big_label = resize_pair(image, label, (64, 96))
    assert big_image.shape == big_label.shape == (64, 96)
    assert ((big_image > 125) == (big_label == 1)).all()  # the edge repeats in both


def test_save_dataset_writes_a_mask_folder_dataset_with_the_last_frames_for_validation(
    frames, tmp_path, capsys
):
    dataset = tmp_path / "to_correct"
    code, out, _ = run_cli(capsys, "--input", frames, "--output", tmp_path / "out", "--save-dataset", dataset)
    assert code == 0 and str(dataset) in out
    assert [s.image.name for s in find_pairs(dataset, "train")] == ["eye0.png", "eye1.png"]
    (held_out,) = find_pairs(dataset, "validation")
    assert held_out.image.name == "eye2.png"
    predicted = cv2.imread(str(tmp_path / "out" / "masks" / "eye2.png"), cv2.IMREAD_UNCHANGED)
    assert (cv2.imread(str(held_out.label), cv2.IMREAD_UNCHANGED) == predicted).all()
    assert (
        cv2.imread(str(held_out.image), cv2.IMREAD_UNCHANGED) == cv2.imread(str(frames / "eye2.png"), 0)
    ).all()
    rows = read_csv(dataset / "confidence.csv")
    assert [r["split"] for r in rows] == ["train", "train", "validation"]


def test_save_dataset_keeps_only_confident_frames_and_refuses_a_folder_with_work_in_it(
    frames, tmp_path, capsys
):
    dataset = tmp_path / "to_correct"
    args = ("--input", frames, "--output", tmp_path / "out", "--save-dataset", dataset)
    assert run_cli(capsys, *args, "--save-confidence", "1.0")[0] == 0
    assert [r["split"] for r in read_csv(dataset / "confidence.csv")] == ["", "", ""]
    assert not list((dataset / "train" / "images").iterdir())
    corrected = dataset / "train" / "masks" / "mine.png"
    corrected.write_bytes(b"a mask someone corrected")
    code, _, err = run_cli(capsys, *args, "--overwrite")  # --overwrite is for --output's results alone
    assert code == 1 and str(dataset) in err and "not empty" in err
    assert corrected.read_bytes() == b"a mask someone corrected"


def test_mm_per_px_adds_diameters_in_mm_and_bad_time_series_flags_are_usage_errors(frames, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys, "--input", frames, "--output", tmp_path, "--mm-per-px", "0.1", "--no-smooth"
    )
    rows = read_csv(tmp_path / "pupil.csv")
    assert code == 0 and list(rows[0]) == list(csv_columns(PupillometryConfig(smooth=False, mm_per_px=0.1)))
    assert float(rows[0]["diameter_mm"]) == pytest.approx(float(rows[0]["axis_major"]) * 0.1, abs=1e-5)
    assert "mm (--mm-per-px)" in out
    for flag, value in (("--mm-per-px", "-1"), ("--fps", "0"), ("--blink-share", "1.5")):
        with pytest.raises(SystemExit):
            main(["--input", str(frames), flag, value])
        assert flag in capsys.readouterr().err


def test_help_shows_every_flag_percent_signs_included(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--save-dataset" in out and "(about ±4%)" in out  # --mm-from-iris


@pytest.mark.parametrize("header", [math.nan, 0.0, 1e9])
def test_a_video_header_without_a_plausible_frame_rate_gives_30_with_a_warning(header, capsys):
    class Header:
        def get(self, prop):
            return header

    assert video_fps(Header(), Path("eye.mp4")) == 30.0
    assert "eye.mp4" in capsys.readouterr().err


def test_a_camera_says_which_flags_it_ignores(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    code, _, err = run_cli(capsys, "--input", "0", "--output", tmp_path, "--masks", "--fps", "60")
    assert code == 1 and "note: a camera ignores --masks, --fps" in err and "needs a display" in err
