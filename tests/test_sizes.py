"""Frames at their own size: run sizes, the any-size export, multi-scale training; and the one
pupil blob that masks, ellipses and metrics keep."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import PRETRAINED_ONNX, PRETRAINED_PT, make_checkpoint, tiny_config

from config import DataConfig, PreprocessConfig, SettingError
from data.augment import crop_to
from data.dataset import EyeDataset
from data.frames import synthetic_frames
from data.loading import EpochSampler, SizedBatches
from inference import batch_fits, load_predictor, own_size, pupil_geometry, pupil_mask
from models.checkpoint import load_checkpoint
from train_efficientvit import main as train

# ---- one blob ----


def two_blobs() -> np.ndarray:
    """A probability map: a pupil disc (0.9) and a smaller glint-cluster blob (0.8) beside it."""
    prob = np.zeros((100, 120), np.float32)
    cv2.circle(prob, (40, 50), 15, 0.9, -1)
    cv2.circle(prob, (95, 20), 6, 0.8, -1)
    return prob


def test_the_mask_keeps_the_pupils_blob_alone():
    prob = two_blobs()
    mask = pupil_mask(prob)
    assert mask[50, 40] and not mask[20, 95] and mask.sum() == (prob > 0.5).sum() - (prob == 0.8).sum()


def test_raw_keeps_every_pixel_above_the_threshold():
    prob = two_blobs()
    assert np.array_equal(pupil_mask(prob, raw=True), prob > 0.5)


def test_a_sure_pupil_wins_over_a_larger_patch_barely_above_the_threshold():
    prob = np.zeros((100, 120), np.float32)
    cv2.circle(prob, (30, 50), 12, 0.99, -1)  # the pupil
    cv2.rectangle(prob, (70, 10), (115, 90), 0.52, -1)  # a dark iris patch, eight times its area
    assert pupil_mask(prob)[50, 30] and not pupil_mask(prob)[50, 90]
    assert pupil_geometry(prob > 0.5, prob)["centre_x"] == pytest.approx(30, abs=1)


def test_an_empty_map_gives_an_empty_mask():
    assert not pupil_mask(np.zeros((10, 12), np.float32)).any()


# ---- run sizes ----


@pytest.mark.parametrize(
    ("shape", "trained", "size", "scale"),
    [
        ((200, 200), None, (208, 208), 1.0),  # native: its own pixels, padded to 16
        ((64, 96), None, (128, 192), 2.0),  # native, but at least 128 a side
        ((200, 200), (256, 416), (256, 256), 1.28),  # auto: the scale fitting into 256x416 takes
        ((400, 640), (256, 416), (256, 416), 0.64),
        ((416, 256), (256, 416), (416, 256), 1.0),  # a portrait frame at the model's scale too
    ],
)
def test_a_frame_runs_in_its_own_shape_padded_to_16(shape, trained, size, scale):
    assert own_size(shape, trained) == (size, pytest.approx(scale))


def test_a_batch_of_two_shapes_runs_at_the_size_that_holds_both():
    size, scales = batch_fits([(200, 200), (192, 300)], "native", (256, 416))
    assert size == (208, 304) and scales == [1.0, 1.0]
    assert batch_fits([(200, 200)], (256, 416), (256, 416)) == ((256, 416), [math.inf])


@pytest.mark.parametrize("size", ["auto", "native"])
def test_probabilities_in_the_frames_own_shape_land_on_its_pixels(size):
    predictor = load_predictor(PRETRAINED_PT).use_size(size)
    image, label = synthetic_frames(1, 5, (192, 320)).read(0)
    prob = predictor.probabilities([image])[0]
    found, truth = pupil_geometry(pupil_mask(prob), prob), pupil_geometry(label.astype(bool))
    assert prob.shape == (192, 320) and found["found"]
    assert abs(found["centre_x"] - truth["centre_x"]) < 2 and abs(found["centre_y"] - truth["centre_y"]) < 2


def test_a_file_of_fixed_size_refuses_auto_in_one_line(tmp_path):
    import onnx

    model = onnx.load(PRETRAINED_ONNX)  # the shipped export with its height and width fixed
    for value in (*model.graph.input, *model.graph.output):
        for dim, size in zip(value.type.tensor_type.shape.dim[2:], (256, 416), strict=True):
            dim.dim_value = size
    onnx.save(model, tmp_path / "fixed.onnx")
    predictor = load_predictor(tmp_path / "fixed.onnx")
    assert not predictor.dynamic and predictor.run_size == (256, 416)
    with pytest.raises(ValueError, match=r"its input is fixed at 256x416; --img-size auto needs"):
        predictor.use_size("auto")


def test_a_model_that_takes_any_size_runs_frames_in_their_own_shape_by_default(tmp_path):
    predictor = load_predictor(make_checkpoint(tmp_path / "m.pt"))
    assert predictor.run_size == "auto" and predictor.input_size((200, 200)) == (128, 128)  # at 64x96's scale
    assert predictor.use_size((96, 96)).size_name == "96x96" and predictor.input_size((200, 200)) == (96, 96)
    assert load_predictor(PRETRAINED_ONNX).run_size == "auto"  # the shipped export takes any size


# ---- multi-scale training ----


def test_a_crop_keeps_the_pupils_centre_and_takes_the_batchs_shape():
    image, label = synthetic_frames(1, 0, (256, 416)).read(0)
    ys, xs = np.nonzero(label)
    for seed in range(5):
        cropped, cropped_label = crop_to(image, label, (128, 128), rng=np.random.default_rng(seed))
        assert cropped.shape == cropped_label.shape == (128, 128) and cropped_label.any()
    assert set(np.unique(cropped_label)) <= {0, 1} and xs.size


def test_each_batch_has_one_size_drawn_by_seed_and_epoch():
    sizes = ((64, 64), (96, 160))
    sampler = EpochSampler(12, shuffle=True, seed=3, batch_size=4)
    batches = SizedBatches(sampler, 4, sizes)
    sampler.set_epoch(1)
    first, again = list(batches), list(batches)
    assert first == again and len(first) == len(batches) == 3
    assert all(len({size for *_, size in batch}) == 1 for batch in first)
    assert {
        batch[0][2] for epoch in range(6) for batch in (sampler.set_epoch(epoch), list(batches))[1]
    } == set(sizes)


def test_a_multi_scale_item_is_at_its_batchs_size():
    dataset = EyeDataset(synthetic_frames(2, 0, (96, 128)), (96, 128), PreprocessConfig(), None, 0)
    item = dataset[(0, 1, (64, 80))]
    assert item["image"].shape == (1, 64, 80) and item["label"].shape == (64, 80)
    assert dataset[(0, 1)]["image"].shape == (1, 96, 128)  # without a size: img_size, as before


@pytest.mark.parametrize("text", ["64x", "16x16", "64x64,abc"])
def test_malformed_train_sizes_are_setting_errors(text):
    with pytest.raises(SettingError, match="train_sizes"):
        DataConfig(train_sizes=text)


def test_a_multi_scale_run_trains_on_batches_of_each_size(tmp_path, monkeypatch):
    from training import loop as training

    seen, forward = set(), training.forward

    def spy(model, batch, *args, **kwargs):
        seen.add(tuple(batch["image"].shape[-2:]))
        return forward(model, batch, *args, **kwargs)

    monkeypatch.setattr(training, "forward", spy)
    config = tiny_config(tmp_path / "run", epochs=3)
    train(config.replace(data=config.data.replace(train_sizes="48x48,64x96", synthetic_train=16)))
    assert {(48, 48), (64, 96), (48, 64)} <= seen  # both training sizes; validation at img_size


def test_fine_tuning_defaults_to_a_cosine_schedule_down_to_a_hundredth(tmp_path):
    source = make_checkpoint(tmp_path / "source.pt")
    summary = train(tiny_config(tmp_path / "run", epochs=3, init_from=str(source), model=None, lr=1e-3))
    lrs = [epoch["lr"] for epoch in summary["history"]]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["schedule"] == "cosine"


def test_training_from_scratch_keeps_the_plateau_schedule(tmp_path):
    train(tiny_config(tmp_path / "run", epochs=1))
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["schedule"] == "plateau"


@pytest.mark.parametrize("raw", [False, True])
def test_predicts_masks_hold_the_pupils_blob_unless_raw(tmp_path, raw):
    from config import PupillometryConfig
    from pipeline.recording import Recording

    with Recording(tmp_path, PupillometryConfig(), threshold=0.5, raw_mask=raw, masks=True) as recording:
        mask, geometry = recording.measure(("a.png", "a", np.zeros((100, 120), np.uint8)), two_blobs())
    written = cv2.imread(str(tmp_path / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert np.array_equal(written, mask) and written[20, 95] == raw and written[50, 40]
    assert geometry["centre_x"] == pytest.approx(40, abs=0.5)  # the ellipse is the pupil's either way


def test_evaluate_scores_at_the_size_asked_and_says_so(tmp_path):
    from data.synthetic import write_openeds
    from evaluate import evaluate

    root = write_openeds(tmp_path / "ds", 4, seed=3, size=(200, 200), val_fraction=0.5)
    auto = evaluate(PRETRAINED_PT, data_dir=root, img_size="auto")
    fitted = evaluate(PRETRAINED_PT, data_dir=root, img_size=(256, 416), raw_mask=True)
    assert (auto["model"]["run_size"], fitted["model"]["run_size"]) == ("auto", "256x416")
    assert (auto["mask"], fitted["mask"]) == ("pupil blob", "raw")
