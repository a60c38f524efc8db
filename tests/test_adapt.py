"""adapt.py: choosing pseudo-labelled frames, its refusals, collapse, and a whole round at tiny sizes."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
from conftest import PRETRAINED_PT

from adapt import collapsed, main
from data.frames import synthetic_frames
from data.pseudo import Candidate, SelectionError, select_frames, write_dataset
from data.synthetic import write_sequence
from inference import load_predictor

# a round small enough for the default suite: few frames, one short epoch, no MLflow, no export
QUICK = [
    "--epochs",
    "1",
    "--scan",
    "18",
    "--min-confidence",
    "0.5",
    "--min-frames",
    "5",
    "--no-mlflow",
    "--no-export",
]


def candidate(
    position: int, *, confidence: float = 0.95, recording: str = "eye", length: int = 100, seed=None
):
    """A frame of noise (each its own, unless `seed` repeats one) with a disc of pupil."""
    rng = np.random.default_rng(position if seed is None else seed)
    image = rng.integers(0, 255, (32, 32), dtype=np.uint8)
    mask = cv2.circle(np.zeros((32, 32), np.uint8), (16, 16), 5, 1, -1).astype(bool)
    return Candidate(recording, position, length, image, mask, confidence)


def select(candidates, **overrides):
    settings = {"min_confidence": 0.9, "max_frames": 10, "min_frames": 3, "min_span": 0.2} | overrides
    return select_frames(candidates, **settings)


def test_frames_are_spread_over_the_recording_and_capped():
    picked = select([candidate(p) for p in range(100)])
    positions = [c.position for c in picked]
    assert len(picked) == 10 and positions[0] == 0 and positions[-1] == 99
    assert all(8 <= b - a <= 14 for a, b in zip(positions, positions[1:], strict=False))


def test_unconfident_frames_and_frames_without_a_pupil_are_not_picked():
    frames = [candidate(p, confidence=0.5 if p % 2 else 0.95) for p in range(40)]
    empty = Candidate("eye", 99, 100, frames[0].image, np.zeros((32, 32), bool), 1.0)
    picked = select([*frames, empty], max_frames=100)
    assert {c.position % 2 for c in picked} == {0} and empty not in picked


def test_near_copies_are_dropped():
    still = [candidate(p, seed=0) for p in range(100)]  # the same frame a hundred times
    with pytest.raises(SelectionError, match="1 distinct confident frames once near copies"):
        select(still)


def test_each_recording_gets_its_share():
    frames = [candidate(p, recording="a") for p in range(60)] + [
        candidate(p, recording="b") for p in range(20)
    ]
    picked = select(frames, max_frames=8)
    assert [sum(c.recording == r for c in picked) for r in "ab"] == [6, 2]


def test_too_few_confident_frames_is_refused_in_one_line():
    frames = [candidate(p, confidence=0.95 if p < 2 else 0.1) for p in range(50)]
    with pytest.raises(SelectionError) as caught:
        select(frames, min_span=0)
    message = str(caught.value)
    assert "only 2 of the 50 frames" in message and "needs 3" in message and "\n" not in message


def test_one_short_stretch_is_refused():
    frames = [candidate(p, confidence=0.95 if 40 <= p < 50 else 0.1) for p in range(100)]
    with pytest.raises(SelectionError, match=r"one short stretch \(eye: frames 40-49 of 100\): 10%"):
        select(frames)


def test_pseudo_labelled_frames_are_written_in_the_mask_folder_layout(tmp_path):
    counts = write_dataset(tmp_path, [candidate(p) for p in range(7)])
    assert counts == {"train": 6, "validation": 1}
    mask = cv2.imread(str(tmp_path / "validation" / "masks" / "eye_000004.png"), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(mask)) == {0, 255} and (tmp_path / "train" / "images" / "eye_000000.png").exists()


@pytest.mark.parametrize(
    ("area", "tracked", "why"),
    [(300, 0.9, None), (500, 0.9, "median pupil area 500 px against 300 px"), (300, 0.4, "tracked in 40%")],
)
def test_a_collapse_is_a_pupil_area_or_tracked_share_far_from_the_start(area, tracked, why):
    start = {"median_area_px": 300.0, "tracked_share": 0.9}
    found = collapsed({"median_area_px": area, "tracked_share": tracked}, start, 0.35)
    assert found == why if why is None else why in found


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return (
        write_sequence(tmp_path_factory.mktemp("eye"), 36, seed=4, size=(128, 208), style="narrow")
        / "eye.mp4"
    )


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_round_on_a_video_adapts_reports_before_and_after_and_exports(video, tmp_path, capsys, monkeypatch):
    import export_onnx

    exported = []  # the export itself (a verified any-size file) is export_onnx's, tested there
    monkeypatch.setattr(
        export_onnx, "export_onnx", lambda source, target, **kw: exported.append((source, target))
    )
    before = digest(PRETRAINED_PT)
    out = tmp_path / "adapt"
    assert main(["--input", str(video), "--output", str(out), *[a for a in QUICK if a != "--no-export"]]) == 0
    printed = capsys.readouterr().out
    assert "| confidence, median |" in printed and "round 1" in printed
    result = json.loads((out / "adapt.json").read_text())
    assert len(result["rounds"]) == 2 and result["collapse"] is None
    assert result["size"] == [256, 416]  # at the model's scale
    assert (out / "adapted.pt").exists() and exported == [(out / "adapted.pt", out / "adapted.onnx")]
    assert any((out / "round-1" / "data" / "train" / "masks").iterdir())
    assert digest(PRETRAINED_PT) == before  # the source model is never touched


def test_a_collapsed_round_keeps_no_model(video, tmp_path, capsys):
    out = tmp_path / "adapt"
    assert main(["--input", str(video), "--output", str(out), *QUICK, "--max-drift", "1e-9"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the fine-tuning's progress bars
    assert last.startswith("error: round 1 collapsed (median pupil area")
    assert not (out / "adapted.pt").exists() and (out / "report.md").exists()


def test_unconfident_frames_are_refused_before_training(video, tmp_path, capsys):
    out = tmp_path / "adapt"
    assert main(["--input", str(video), "--output", str(out), *QUICK, "--min-confidence", "1"]) == 1
    err = capsys.readouterr().err
    assert "have a pupil at confidence >= 1" in err and err.count("\n") == 1
    assert not (out / "round-1" / "train").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "pretrained.onnx"], "is an ONNX export; adapting fine-tunes a .pt checkpoint"),
        (["--input", "missing.mp4"], "missing.mp4: no such file or folder"),
    ],
)
def test_what_cannot_be_adapted_is_one_line(video, tmp_path, capsys, args, message):
    (tmp_path / "pretrained.onnx").write_bytes(b"")
    argv = ["--input", str(video), "--output", str(tmp_path / "out"), *QUICK]
    argv += [a if not a.endswith((".onnx", ".mp4")) else str(tmp_path / a) for a in args]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_output_folder_that_holds_anything_is_refused(video, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--input", str(video), "--output", str(tmp_path), *QUICK]) == 1
    assert "folder is not empty" in capsys.readouterr().err and (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_folder_of_frames_adapts_as_its_video_does(video, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(str(video))
    while (read := capture.read())[0]:
        cv2.imwrite(str(frames / f"f{len(list(frames.iterdir())):03d}.png"), read[1][..., 0])
    out = tmp_path / "adapt"
    assert main(["--input", str(frames), "--output", str(out), *QUICK]) == 0
    adapted = load_predictor(out / "adapted.pt")
    assert adapted.dynamic and adapted.run_size == "auto"  # takes any size, at its trained scale
    image = synthetic_frames(1, 0, (200, 200)).read(0)[0]  # another size than the frames'
    assert adapted.probabilities([image])[0].shape == (200, 200)
