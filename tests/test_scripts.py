"""The measuring scripts: stride_ceiling.py (the ideal coarse prediction loses what its stride
cannot draw), score_line.py (one line of real-eyes figures), fit_confidence.py (the regression
behind the per-frame confidence), sequence_check.py (predict.py on synthetic videos) and the shell
scripts' evaluate.py calls."""

import ast
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest

import evaluate
from evaluation.metrics import mask_counts, set_metrics
from pupillometry.confidence import WEIGHTS
from scripts import fit_confidence, sequence_check
from scripts.score_line import score_line
from scripts.stride_ceiling import main, stride_prediction


def mask_iou(pred, truth) -> float:
    return set_metrics([mask_counts(pred, truth)])["pupil_iou"]


def disc(radius: int, shape: tuple[int, int] = (200, 200)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, (shape[1] // 2 + 3, shape[0] // 2 - 5), radius, 1, thickness=-1)
    return mask.astype(bool)


def test_full_resolution_is_exact_and_coarser_strides_lose_small_pupils_first():
    small, large = disc(6), disc(40)
    assert mask_iou(stride_prediction(small, (200, 200), 1), small) == 1.0
    ious = [mask_iou(stride_prediction(small, (200, 200), s), small) for s in (2, 4, 8, 16)]
    assert ious == sorted(ious, reverse=True) and ious[-1] < 0.8
    assert mask_iou(stride_prediction(large, (200, 200), 8), large) > 0.95


def test_a_crop_is_fitted_into_a_wide_input_and_mapped_back_onto_its_pixels():
    label = disc(30, (120, 120))
    back = stride_prediction(label, (64, 160), 4)
    assert back.shape == label.shape and mask_iou(back, label) > 0.9


def test_cli_prints_one_row_per_stride(tmp_path, capsys):
    for folder in ("images", "masks"):
        (tmp_path / "validation" / folder).mkdir(parents=True)
    for i in range(2):
        mask = disc(10 + 5 * i, (60, 80))
        cv2.imwrite(str(tmp_path / "validation" / "images" / f"{i}.png"), np.full((60, 80), 90, np.uint8))
        cv2.imwrite(str(tmp_path / "validation" / "masks" / f"{i}.png"), 255 * mask.astype(np.uint8))
    assert main([str(tmp_path), "--img-size", "64x96", "--strides", "1,4"]) == 0
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| 1 ") or line.startswith("| 4 ")
    ]
    assert len(rows) == 2 and rows[0].startswith("| 1 | 1.0000")


@pytest.mark.parametrize("strides", ["0,4", "four"])
def test_strides_must_be_positive_whole_numbers(tmp_path, capsys, strides):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--strides", strides])
    assert "--strides" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("folder", "split", "named"), [("nowhere", "val", "nowhere"), (".", "bogus", "'bogus'")]
)
def test_bad_folder_or_split_is_a_one_line_error(tmp_path, capsys, folder, split, named):
    assert main([str(tmp_path / folder), "--split", split]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and named in err and err.count("\n") == 1


def figures(share, median, with_pupil=10, missed=1) -> dict:
    located = {"within_px": 5.0, "share": share, "median_error_px": median}
    detection = {"with_pupil": with_pupil, "missed": missed}
    return {"plain": {"pupil_iou": 0.8, "located": located, "detection": detection}}


def test_score_line_gives_each_figure_and_survives_missing_ones():
    line = score_line(figures(0.9, 1.25), "pretrained, 50 frames")
    assert line.startswith("pretrained, 50 frames") and "pupil IoU 0.800" in line
    assert "within 5 px 90.0%" in line and "1.25 px" in line and "detected 90.0%" in line
    assert "median centre error missed" in score_line(figures(0.2, None), "x")
    assert "no labelled pupil" in score_line(figures(None, None, with_pupil=0, missed=0), "x")


SHELL_SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.sh"))


def evaluate_calls(script: Path) -> list[list[str]]:
    """The arguments of each evaluate.py command in a shell script, up to its first redirection."""
    calls = []
    for line in script.read_text().splitlines():
        words = shlex.split(line, comments=True) if "evaluate.py" in line else []
        if "evaluate.py" in words:
            rest = words[words.index("evaluate.py") + 1 :]
            calls.append(list(next((rest[:i] for i, w in enumerate(rest) if w.startswith(">")), rest)))
    return calls


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_call_evaluate_with_its_current_flags(script, capsys):
    for args in evaluate_calls(script):
        evaluate.build_parser().parse_args(args)  # an unknown flag exits
        assert capsys.readouterr().err == "", f"{script.name}: evaluate.py {shlex.join(args)}"


def test_the_scripts_that_score_on_real_eyes_call_evaluate():
    assert {p.name for p in SHELL_SCRIPTS if evaluate_calls(p)} >= {"few_shot.sh", "ablate_synthetic.sh"}


def test_fit_logistic_recovers_the_coefficients_that_drew_the_labels():
    rng = np.random.default_rng(0)
    terms = rng.normal(size=(4000, 2))
    chance = 1 / (1 + np.exp(-(0.5 + terms @ np.array([2.0, -1.0]))))
    intercept, weights = fit_confidence.fit_logistic(terms, (rng.random(4000) < chance).astype(float))
    assert intercept == pytest.approx(0.5, abs=0.15)
    assert weights == pytest.approx([2.0, -1.0], abs=0.15)


def test_fit_confidence_prints_coefficients_to_paste_and_the_aurocs(capsys):
    assert fit_confidence.main(["--n", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("INTERCEPT = ")
    assert ast.literal_eval(lines[1].removeprefix("WEIGHTS = ")).keys() == WEIGHTS.keys()
    assert [line.split()[0] for line in lines[3:]] == ["logistic", "soft", "mean_prob"]


@pytest.mark.slow
def test_sequence_check_prints_a_table_row_per_video_and_one_for_all(capsys):
    assert sequence_check.main(["--videos", "1", "--frames", "45", "--size", "96x160"]) == 0
    table = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    header, _, *rows = [[cell.strip() for cell in row] for row in table]
    assert header == ["video", "blinks", "found", "extra", "diameter raw", "diameter filtered", "centre raw",
                      "centre filtered", "frames/s"]  # fmt: skip
    assert [row[0] for row in rows] == ["1000", "all"]
    assert all(len(row) == len(header) and all(float(cell) >= 0 for cell in row[1:]) for row in rows)
    assert rows[0][1:] == rows[1][1:]  # one video: its totals and means are its own


def test_adapt_real_splits_people_by_name_and_orders_their_frames_by_number(tmp_path):
    from scripts.adapt_real import people

    for name in ("3_Left_10.png", "3_Left_9.png", "40_Right_2.png"):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / name).write_bytes(b"")
    found = people(tmp_path)
    assert {p: [f.name for f in files] for p, files in found.items()} == {
        "3": ["3_Left_9.png", "3_Left_10.png"],
        "40": ["40_Right_2.png"],
    }


def test_adapt_real_scores_centres_on_open_frames_and_a_miss_as_infinitely_far(tmp_path):
    from scripts.adapt_real import centre_errors

    (tmp_path / "pupil.csv").write_text("frame,centre_x,centre_y\n0,10,10\n1,,\n2,5,5\n")
    truth = [{"centre_x": x, "centre_y": y, "closed": c} for x, y, c in (("0", "0", "0"), ("13", "14", "0"),
             ("12", "10", "0"), ("0", "0", "1"))]  # fmt: skip
    errors = centre_errors(tmp_path / "pupil.csv", truth, first=1)
    assert errors[0] == 5.0 and errors[1] == np.inf and len(errors) == 2


def test_pick_pretrained_names_the_epoch_best_on_train(tmp_path, capsys):
    from conftest import make_checkpoint

    from data.synthetic import write_openeds
    from scripts.pick_pretrained import main as pick

    root = write_openeds(tmp_path / "real", 2, seed=0, size=(64, 96), val_fraction=0.5)
    for epoch in (1, 2):
        make_checkpoint(tmp_path / "run" / "epochs" / f"epoch-{epoch:03d}.pt")
    assert pick([str(tmp_path / "run"), str(root)]) == 0
    out = capsys.readouterr().out
    assert "epoch-001.pt: pupil IoU" in out and f"best on {root}/train: " in out
    assert pick([str(tmp_path / "nothing"), str(root)]) == 1
