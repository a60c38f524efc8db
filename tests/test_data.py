"""data/: reading folders, bad-input errors, preprocessing, augmentation, loss targets, dataset."""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from config import TrainConfig
from config.flags import positive_int_argument
from data import (
    AugmentConfig,
    DataConfig,
    DataError,
    EyeDataset,
    PreprocessConfig,
    build_datasets,
    check_dataset,
    expand_batch,
    find_pairs,
    preprocess,
    read_image,
    read_label,
)
from data.__main__ import main as check_main
from data.frames import folder_frames, synthetic_frames
from data.loading import close_loader, make_loader
from data.preprocess import enhance, normalise
from data.synthetic import write_openeds
from data.synthetic.__main__ import main as synthetic_main
from data.targets import boundary_weight, distance_maps
from evaluate import build_parser

SIZE = (48, 64)  # (H, W): small frames keep the suite fast
NO_AUGMENT = {f"{name}_p": 0.0 for name in ("flip", "line", "blur", "affine", "photometric", "noise")}
ROOT = Path(__file__).resolve().parents[1]


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imencode(".png", image)[1].tofile(path)
    return path


def eye_frame(size=SIZE, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A grey frame with a dark disc, and its OpenEDS label (3 on the disc, 2 and 1 around)."""
    h, w = size
    rng = np.random.default_rng(seed)
    image = rng.integers(120, 160, size, dtype=np.uint8)
    label = np.zeros(size, np.uint8)
    centre = (int(w * rng.uniform(0.3, 0.7)), int(h * rng.uniform(0.3, 0.7)))
    for value, radius in ((1, h // 2), (2, h // 3), (3, h // 6)):
        cv2.circle(label, centre, radius, value, -1)
    image[label == 3] = 20
    return image, label


def make_openeds(root: Path, splits=("train", "validation"), n=3, size=SIZE) -> Path:
    for split in splits:
        for i in range(n):
            image, label = eye_frame(size, seed=i)
            write_png(root / split / "images" / f"{i:03d}.png", image)
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            np.save(root / split / "labels" / f"{i:03d}.npy", label)
    return root


def dataset(source, augment: AugmentConfig | None = None, size=SIZE, seed=0) -> EyeDataset:
    return EyeDataset(source, size, PreprocessConfig(), augment, seed)


# reading


def test_openeds_label_maps_pupil_to_one(tmp_path):
    raw = np.array([[0, 1, 2, 3], [3, 3, 2, 0]], np.uint8)
    np.save(tmp_path / "a.npy", raw.astype(np.int64))  # int64 labels are accepted too
    label = read_label(tmp_path / "a.npy")
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, raw == 3)


def test_mask_png_any_nonzero_is_pupil(tmp_path):
    mask = np.zeros((4, 5, 3), np.uint8)
    mask[0, 0] = (0, 0, 1)  # a faint colour, which grayscale conversion would round to 0
    mask[2, 3] = (255, 255, 255)
    label = read_label(write_png(tmp_path / "m.png", mask))
    assert label.tolist() == (mask.max(axis=2) > 0).astype(np.uint8).tolist()


def test_read_image_converts_colour_and_16_bit(tmp_path):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    colour = read_image(write_png(tmp_path / "c.png", cv2.merge([grey, grey, grey])))
    deep = read_image(write_png(tmp_path / "d.png", grey.astype(np.uint16) * 257))
    assert colour.shape == grey.shape and colour.dtype == np.uint8
    np.testing.assert_array_equal(colour, grey)
    np.testing.assert_array_equal(deep, grey)


@pytest.mark.parametrize("bits", [10, 12])
def test_read_image_scales_10_and_12_bit_data_by_the_bits_used(tmp_path, bits):
    ramp = np.tile(np.linspace(0, 2**bits - 1, 64).astype(np.uint16), (8, 1))  # in a 16-bit PNG
    image = read_image(write_png(tmp_path / "deep.png", ramp))
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255
    np.testing.assert_array_equal(image, ramp >> (bits - 8))


def test_frames_of_one_12_bit_camera_get_one_scale(tmp_path):
    # a frame whose brightest pixel is 2047 must not come out twice as bright as one reaching 4095
    bright, dim = np.full((8, 8), 1000, np.uint16), np.full((8, 8), 1000, np.uint16)
    bright[0, 0], dim[0, 0] = 4095, 2047  # the glint
    a = read_image(write_png(tmp_path / "bright.png", bright))
    b = read_image(write_png(tmp_path / "dim.png", dim))
    assert a[4, 4] == b[4, 4] == 1000 >> 4


def test_positive_int_argument_rejects_zero_and_words():
    assert positive_int_argument("3") == 3
    for text in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
            positive_int_argument(text)


def test_unicode_path(tmp_path):
    image, _ = eye_frame()
    path = write_png(tmp_path / "Äuge 目" / "x.png", image)
    np.testing.assert_array_equal(read_image(path), image)


def test_find_pairs_layouts_and_val_alias(tmp_path):
    root = make_openeds(tmp_path / "openeds", n=3)
    pairs = find_pairs(root, "train")
    assert [p.image.stem for p in pairs] == ["000", "001", "002"]
    assert all(p.label.suffix == ".npy" for p in pairs)
    masks = tmp_path / "masks"
    for stem in ("b", "a"):
        image, label = eye_frame()
        write_png(masks / "val" / "images" / f"{stem}.png", image)
        write_png(masks / "val" / "masks" / f"{stem}.png", (label == 3).astype(np.uint8) * 255)
    pairs = find_pairs(masks, "validation")
    assert [p.image.stem for p in pairs] == ["a", "b"]
    assert find_pairs(masks, "val") == pairs
    assert dataset(folder_frames(masks, "val")).source_name == "masks"
    with pytest.raises(ValueError, match="'dev'"):
        find_pairs(masks, "dev")


# bad input: each a DataError naming the file or folder


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        find_pairs(tmp_path / "nope", "train")


def test_root_without_split_folders(tmp_path):
    with pytest.raises(DataError, match="no train folder") as error:
        find_pairs(tmp_path, "train")
    assert str(tmp_path) in str(error.value)


def test_split_without_images(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "labels").mkdir()
    with pytest.raises(DataError, match="no images") as error:
        find_pairs(tmp_path, "train")
    assert str(tmp_path / "train" / "images") in str(error.value)


def test_image_without_label_and_label_without_image(tmp_path):
    root = make_openeds(tmp_path, n=6)
    for i in range(4):
        (root / "train" / "labels" / f"00{i}.npy").unlink()
    with pytest.raises(DataError, match="no label") as error:
        find_pairs(root, "train")
    message = str(error.value)
    assert str(root / "train" / "images" / "000.png") in message and "1 more" in message
    (root / "validation" / "images" / "002.png").unlink()
    with pytest.raises(DataError, match="no image") as error:
        find_pairs(root, "validation")
    assert str(root / "validation" / "labels" / "002.npy") in str(error.value)


@pytest.mark.parametrize(
    "label, problem",
    [
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.full((4, 4), 7, np.uint8), r"values \[7\] outside 0..3"),
        (np.full((4, 4), -1, np.int16), r"values \[-1\] outside 0..3"),
        (np.zeros((4, 4), np.float32), "dtype"),
    ],
)
def test_bad_label_array(tmp_path, label, problem):
    np.save(tmp_path / "bad.npy", label)
    with pytest.raises(DataError, match=problem) as error:
        read_label(tmp_path / "bad.npy")
    assert str(tmp_path / "bad.npy") in str(error.value)


def test_corrupt_npy(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((40, 60), np.uint8))
    data = (tmp_path / "c.npy").read_bytes()
    (tmp_path / "c.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable .npy") as error:
        read_label(tmp_path / "c.npy")
    assert str(tmp_path / "c.npy") in str(error.value)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_png(tmp_path, keep):
    path = write_png(tmp_path / "t.png", eye_frame()[0])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match="truncated PNG") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_not_an_image_and_missing_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match="not a readable image"):
        read_image(tmp_path / "x.png")
    with pytest.raises(DataError, match="file not found"):
        read_image(tmp_path / "y.png")


def test_label_shape_differs_from_image(tmp_path):
    root = make_openeds(tmp_path, n=2)
    np.save(root / "train" / "labels" / "001.npy", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="does not match") as error:
        dataset(folder_frames(root, "train"))[1]
    assert str(root / "train" / "labels" / "001.npy") in str(error.value)


def symlink_loop(path: Path) -> Path:
    path.symlink_to(path.name)  # ln -s loop loop
    return path


def test_symlink_loop_is_a_data_error_naming_it(tmp_path):
    loop = symlink_loop(tmp_path / "loop")
    with pytest.raises(DataError, match=f"{loop}: a symlink loop"):
        find_pairs(loop, "train")
    (tmp_path / "eyes").mkdir()
    split = symlink_loop(tmp_path / "eyes" / "train")
    with pytest.raises(DataError, match=f"{split}: a symlink loop"):
        find_pairs(tmp_path / "eyes", "train")
    looping = "a symlink loop (a link that leads back to itself), not a folder"
    assert check_dataset(tmp_path / "eyes").problems == [f"{split}: {looping}"]


def test_training_on_a_symlink_loop_is_a_data_error_naming_it(tmp_path):
    from tests.conftest import tiny_config
    from train_efficientvit import main as train_main

    loop = symlink_loop(tmp_path / "loop")
    config = tiny_config(tmp_path / "run", data=DataConfig(img_size=SIZE, data_dir=str(loop)))
    with pytest.raises(DataError, match=f"{loop}: a symlink loop"):
        train_main(config)


def test_file_broken_mid_training_names_it(tmp_path):
    root = make_openeds(tmp_path, n=2)
    data = dataset(folder_frames(root, "train"))
    broken = root / "train" / "images" / "001.png"
    broken.write_bytes(broken.read_bytes()[:50])
    data[0]
    with pytest.raises(DataError, match=str(broken)):
        data[1]


# preprocessing


def test_preprocess_range_dtype_and_config_round_trip():
    image, _ = eye_frame()
    out = preprocess(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert -1 <= out.min() < out.max() <= 1
    config = PreprocessConfig(gamma=0.7, clahe_tiles=(4, 2))
    assert PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert not np.array_equal(preprocess(image, config), out)


@pytest.mark.parametrize("image", [np.zeros((8, 8), np.float32), np.zeros((8, 8, 3), np.uint8)])
def test_preprocess_rejects_wrong_input(image):
    with pytest.raises(ValueError, match=str(image.dtype)):
        preprocess(image)


# loss targets


def test_distance_map_signs():
    label = np.zeros((40, 60), np.uint8)
    label[10:20, 5:25] = 1
    dist = distance_maps(label)
    assert dist.shape == (2, 40, 60) and dist.dtype == np.float32
    pupil, background = dist[1], dist[0]
    assert (pupil[label == 1] < 0).all() and (pupil[label == 0] > 0).all()
    np.testing.assert_array_equal(background, -pupil)
    diagonal = np.hypot(40, 60)
    assert pupil[15, 40] * diagonal == pytest.approx(16, rel=0.03)  # 16 px right of the square
    assert pupil[15, 15] * diagonal == pytest.approx(-5, rel=0.03)  # 5 px deep inside it
    for flat in (np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8)):
        assert not distance_maps(flat).any()


def test_boundary_weight_band():
    label = np.zeros((40, 60), np.uint8)
    label[10:20, 5:25] = 1
    weight = boundary_weight(label)
    assert set(np.unique(weight)) == {0.0, 20.0}
    square = np.ones((5, 5), np.uint8)
    near_edge = cv2.dilate(label, square) - cv2.erode(label, square)
    assert (weight[near_edge == 0] == 0).all()
    assert not boundary_weight(np.zeros((8, 8), np.uint8)).any()


# augmentation and the dataset


def test_flip_moves_image_label_weight_and_dist_together(tmp_path):
    image, label = eye_frame((48, 64), seed=3)
    label = (label == 3).astype(np.uint8)
    label[5:9, 2:6] = 1  # a second blob in the top-left corner: no mirror symmetry
    image[label == 1] = 20
    write_png(tmp_path / "train" / "images" / "a.png", image)
    write_png(tmp_path / "train" / "masks" / "a.png", label * 255)
    pairs = folder_frames(tmp_path, "train")
    plain = dataset(pairs)[0]
    flipped = dataset(pairs, AugmentConfig(**{**NO_AUGMENT, "flip_p": 1.0}))[0]
    assert torch.equal(flipped["label"], plain["label"].flip(-1))
    np.testing.assert_allclose(flipped["dist"].float(), plain["dist"].float().flip(-1), rtol=0, atol=1e-6)
    # flipping comes before preprocessing (CLAHE itself is not exactly mirror-symmetric)
    np.testing.assert_array_equal(flipped["image"][0].numpy(), enhance(cv2.flip(image, 1)))
    # Canny breaks ties to one side, so the band may shift by a pixel: compare with its label
    expected = boundary_weight(flipped["label"].numpy()).astype(np.uint8)
    np.testing.assert_array_equal(flipped["weight"].numpy(), expected)
    overlap = (flipped["weight"] > 0) & (plain["weight"].flip(-1) > 0)
    assert overlap.sum() >= 0.8 * (plain["weight"] > 0).sum()


def test_items_are_compact_five_bytes_a_pixel():
    item = dataset(synthetic_frames(2, 0, SIZE), AugmentConfig())[1]
    assert item["image"].shape == (1, *SIZE) and item["image"].dtype == torch.uint8
    assert item["label"].shape == SIZE and item["label"].dtype == torch.uint8
    assert set(item["label"].unique().tolist()) <= {0, 1}
    assert item["weight"].shape == SIZE and item["weight"].dtype == torch.uint8
    assert item["dist"].shape == (1, *SIZE) and item["dist"].dtype == torch.float16
    assert item["index"] == 1
    assert sum(item[k].nbytes for k in ("image", "label", "weight", "dist")) == 5 * SIZE[0] * SIZE[1]


def test_an_expanded_batch_is_what_full_width_targets_were():
    """The compact item widened on the device equals preprocess() and data.targets' float32 maps:
    the image and weight exactly, the distances within float16 rounding."""
    data = dataset(synthetic_frames(3, 0, SIZE), AugmentConfig(), seed=4)
    data.set_epoch(1)
    items = [data[i] for i in range(3)]
    batch = expand_batch(torch.utils.data.default_collate(items), torch.device("cpu"), PreprocessConfig())
    for i, item in enumerate(items):
        label = item["label"].numpy()
        np.testing.assert_array_equal(batch["image"][i, 0].numpy(), normalise(item["image"][0].numpy()))
        assert batch["label"].dtype == torch.int64 and np.array_equal(batch["label"][i].numpy(), label)
        np.testing.assert_array_equal(batch["weight"][i].numpy(), boundary_weight(label))
        np.testing.assert_allclose(batch["dist"][i].numpy(), distance_maps(label), rtol=0, atol=3e-4)
    assert batch["index"].tolist() == [0, 1, 2]


def test_an_epoch_index_pair_reads_that_epochs_augmentation():
    eyes = synthetic_frames(2, 0, SIZE)
    data = dataset(eyes, AugmentConfig(flip_p=0.5, noise_p=1.0, affine_p=1.0), seed=3)
    data.set_epoch(2)
    assert torch.equal(dataset(eyes, data.augment_config, seed=3)[(2, 1)]["image"], data[1]["image"])
    assert not torch.equal(data[(3, 1)]["image"], data[1]["image"])


def test_augmentation_fixed_by_seed_epoch_and_index():
    eyes = synthetic_frames(4, 0, SIZE)
    config = AugmentConfig(flip_p=0.5, noise_p=1.0, affine_p=1.0)
    a, b = dataset(eyes, config, seed=5), dataset(eyes, config, seed=5)
    b[3], b[1]  # order does not matter
    assert torch.equal(a[1]["image"], b[1]["image"])
    a.set_epoch(1)
    assert not torch.equal(a[1]["image"], b[1]["image"])
    b.set_epoch(1)
    assert torch.equal(a[1]["image"], b[1]["image"])
    assert not torch.equal(a[1]["image"], dataset(eyes, config, seed=6)[1]["image"])


def test_worker_count_does_not_change_items():
    data = dataset(synthetic_frames(4, 0, SIZE), AugmentConfig(), seed=1)
    data.set_epoch(2)
    direct = torch.stack([data[i]["image"] for i in range(4)])
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
    np.testing.assert_array_equal(torch.cat([b["image"] for b in loader]).numpy(), direct.numpy())


def test_persistent_workers_augment_each_epoch_as_the_training_process_would():
    data = dataset(synthetic_frames(4, 0, SIZE), AugmentConfig(flip_p=0.5, noise_p=1.0, affine_p=1.0), seed=1)
    loader = make_loader(data, TrainConfig(batch_size=2, workers=2), shuffle=True, device=torch.device("cpu"))
    try:
        for epoch in (0, 1, 2):  # the same workers serve every epoch; the sampler tells them which
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                for index, image in zip(batch["index"].tolist(), batch["image"], strict=True):
                    assert torch.equal(image, data[(epoch, index)]["image"]), (epoch, index)
    finally:
        close_loader(loader)
    assert not torch.equal(data[(0, 1)]["image"], data[(1, 1)]["image"])  # the epochs do differ


def test_augment_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="flip_p"):
        AugmentConfig(flip_p=1.5)
    with pytest.raises(ValueError, match="blur_sigma"):
        AugmentConfig(blur_sigma=(6.0, 2.0))
    config = AugmentConfig(line_count=(2, 3), enabled=False)
    assert AugmentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="colour_p"):
        AugmentConfig.from_dict({"colour_p": 0.5})


def test_disabled_augmentation_changes_nothing():
    eyes = synthetic_frames(2, 0, SIZE)
    off = dataset(eyes, AugmentConfig(enabled=False))[0]
    assert torch.equal(off["image"], dataset(eyes)[0]["image"])


def test_off_size_and_rgb_images_are_resized_and_greyed(tmp_path):
    image, label = eye_frame((24, 32))
    write_png(tmp_path / "train" / "images" / "a.png", cv2.merge([image] * 3))
    write_png(tmp_path / "train" / "masks" / "a.png", (label == 3).astype(np.uint8))
    item = dataset(folder_frames(tmp_path, "train"), size=(48, 64))[0]
    assert item["image"].shape == (1, 48, 64)
    expected = cv2.resize((label == 3).astype(np.uint8), (64, 48), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(item["label"].numpy(), expected)


def test_real_format_openeds_frames(tmp_path):
    make_openeds(tmp_path, splits=("train", "validation"), n=1, size=(400, 640))
    train, val = build_datasets(
        DataConfig(data_dir=str(tmp_path)), PreprocessConfig(), AugmentConfig(), seed=0
    )
    assert (len(train), len(val), train.source_name) == (1, 1, "openeds")
    item = train[0]
    assert item["image"].shape == (1, 400, 640) and item["dist"].shape == (1, 400, 640)
    assert 0 < item["label"].sum() < 400 * 640


def test_build_datasets_synthetic():
    config = DataConfig(img_size=SIZE, synthetic_train=5, synthetic_val=3)
    train, val = build_datasets(config, PreprocessConfig(), AugmentConfig(), seed=2)
    assert (len(train), len(val), train.source_name) == (5, 3, "synthetic")
    assert val.augment_config is None and train.augment_config == AugmentConfig()
    assert not np.array_equal(train.frames.read(0)[0], val.frames.read(0)[0])  # other frames
    assert DataConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_build_datasets_checks_folders_early(tmp_path):
    make_openeds(tmp_path, splits=("train",))
    with pytest.raises(DataError, match="no validation or val folder"):
        build_datasets(DataConfig(data_dir=str(tmp_path)), PreprocessConfig(), AugmentConfig(), seed=0)


# python -m data check


def test_check_good_and_broken_folder(tmp_path):
    root = write_openeds(tmp_path, n=5, size=SIZE, val_fraction=0.4)
    report = check_dataset(root)
    assert report.ok and report.usable_for == "training", report.format()
    assert [s.name for s in report.splits] == ["train", "validation"]
    assert report.splits[0].pairs == 3 and report.splits[0].layout == "openeds"
    assert report.splits[0].image_sizes == {"64x48": 3}
    assert report.splits[0].label_values <= {0, 1, 2, 3}
    bad_label = root / "train" / "labels" / "000001.npy"
    np.save(bad_label, np.full(SIZE, 9, np.uint8))
    truncated = root / "validation" / "images" / "000004.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    (root / "train" / "labels" / "000002.npy").unlink()
    report = check_dataset(root)
    assert not report.ok
    text = report.format()
    for path in (bad_label, truncated, root / "train" / "images" / "000002.png"):
        assert str(path) in text
    assert "NOT USABLE" in text


@pytest.mark.parametrize("split", ["validation", "val", "test"])
def test_check_split_without_train_is_usable_for_evaluation_only(tmp_path, capsys, split):
    make_openeds(tmp_path, splits=(split,))
    report = check_dataset(tmp_path)
    assert (report.usable_for, report.ok, report.problems) == ("evaluation", False, [])
    assert check_main(["check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"OK: usable for evaluation only ({split}), not for training" in out
    assert f"--data-dir {tmp_path} --split {split}\n" in out  # a command evaluate.py takes
    missing = "train/" if split != "test" else "train/ and no validation/ (or val/)"
    assert f"training needs a train/ and a validation/ (or val/) split; this dataset has no {missing}" in out


def test_check_evaluation_command_names_every_split_and_runs(tmp_path, capsys):
    make_openeds(tmp_path / "a b", splits=("validation", "test"))
    assert check_main(["check", str(tmp_path / "a b")]) == 0
    commands = [
        line.split("evaluate: ")[1] for line in capsys.readouterr().out.splitlines() if "evaluate: " in line
    ]
    assert [c.split()[-1] for c in commands] == ["validation", "test"]
    for command in commands:  # evaluate.py's own parser accepts it, the quoted path included
        args = build_parser().parse_args(shlex.split(command)[2:])
        assert args.data_dir == tmp_path / "a b" and find_pairs(args.data_dir, args.split)


def test_check_empty_or_missing_folder_is_not_usable(tmp_path, capsys):
    report = check_dataset(tmp_path)
    assert (report.usable_for, report.splits, report.problems) == (None, [], [])
    assert check_main(["check", str(tmp_path)]) == 1
    assert capsys.readouterr().out.endswith(
        "NOT USABLE: no split with image/label pairs; training needs a train/ and a validation/ "
        "(or val/) split, evaluation any one of train/, validation/ (or val/), test/\n"
    )
    assert check_dataset(tmp_path / "missing").usable_for is None


def test_check_symlink_loop_is_one_line(tmp_path, capsys):
    loop = symlink_loop(tmp_path / "loop")
    assert check_main(["check", str(loop)]) == 1
    out, err = capsys.readouterr()
    assert (
        out == ""
        and err == f"error: {loop}: a symlink loop (a link that leads back to itself), not a folder\n"
    )
    assert check_dataset(loop).usable_for is None


def test_check_broken_file_in_an_evaluation_set_is_not_usable(tmp_path):
    make_openeds(tmp_path, splits=("test",))
    (tmp_path / "test" / "labels" / "001.npy").unlink()
    report = check_dataset(tmp_path)
    assert report.usable_for is None and "NOT USABLE: fix the problems above" in report.format()
    assert check_main(["check", str(tmp_path)]) == 1


@pytest.mark.parametrize(
    ("split", "why"),
    [
        ("train", "the model would only learn to predict no pupil"),
        ("validation", "best.pt would be chosen on a meaningless pupil IoU"),
    ],
)
def test_check_split_without_any_pupil_is_a_problem(tmp_path, split, why):
    root = make_openeds(tmp_path)
    for path in (root / split / "labels").iterdir():
        np.save(path, np.minimum(np.load(path), 2))  # sclera and iris only: closed eyes
    report = check_dataset(root)
    assert report.problems == [f"{root / split}: {split} split has no pupil in any frame: {why}"]
    assert report.usable_for is None and "NOT USABLE" in report.format()


def test_check_validation_only_set_without_any_pupil_is_a_problem(tmp_path):
    root = make_openeds(tmp_path, splits=("validation",))
    for path in (root / "validation" / "labels").iterdir():
        np.save(path, np.minimum(np.load(path), 2))
    why = "its pupil IoU would be meaningless"  # no training run picks a best.pt on it
    assert check_dataset(root).problems == [
        f"{root / 'validation'}: validation split has no pupil in any frame: {why}"
    ]


def test_check_cli_on_synthetic_output(tmp_path, capsys):
    synthetic_main(["--out", str(tmp_path), "--n", "4", "--size", "60x96"])
    assert check_main(["check", str(tmp_path)]) == 0
    assert "OK: usable for training" in capsys.readouterr().out
    broken = tmp_path / "train" / "images" / "000000.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # the real command line, once: exit status 1 and the file named
    command = [sys.executable, "-m", "data", "check", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(broken) in result.stdout


def test_bench_prints_samples_per_second_per_source_and_bytes_per_sample(capsys):
    assert check_main(["bench", "--n", "2", "--size", "32x48"]) == 0
    out = capsys.readouterr().out
    assert "synthetic eyes:" in out and "OpenEDS folder:" in out
    assert "a sample carries 0.01 MB" in out  # 5 bytes a pixel at 32x48
