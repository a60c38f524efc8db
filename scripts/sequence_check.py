"""Pupillometry against known truth: predict.py on synthetic eye videos whose blinks, pupil
diameter and centre are known (`data.synthetic.sequence`), scored as docs/predict.md reports it.

    python scripts/sequence_check.py --videos 6 --frames 300 --size 400x640

Per video: blinks found within 2 frames of a true one (start and end), blinks found that match
none, the mean |diameter - truth| and |centre - truth| (px) over frames open in both truth and
prediction, raw (the ellipse) and filtered, and predict.py's end-to-end frames/s (reading,
model, pupil.csv and the overlay video). Seeds 1000 and up: apart from the tests' videos.
"""

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402

from config.flags import positive_int_argument, size_argument  # noqa: E402
from data.synthetic import write_sequence  # noqa: E402
from predict import main as predict_main  # noqa: E402

TOLERANCE = 2  # frames


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def number(text: str) -> float:
    return float(text) if text else np.nan


def matched_blinks(truth: list[dict], found: list[dict]) -> tuple[int, int]:
    """(true blinks found within TOLERANCE frames at both ends, found blinks matching no true one)."""

    def near(a: dict, b: dict) -> bool:
        ends = ("start_frame", "end_frame")
        return all(abs(int(a[end]) - int(b[end])) <= TOLERANCE for end in ends)

    hits = sum(any(near(t, f) for f in found) for t in truth)
    return hits, sum(not any(near(t, f) for t in truth) for f in found)


def errors(truth: list[dict], rows: list[dict]) -> dict[str, float]:
    """Mean diameter and centre errors (px), raw and filtered, over frames open in both."""
    both = [(t, r) for t, r in zip(truth, rows, strict=True) if t["blink"] == "0" and r["blink"] == "0"]
    t_d = np.array([float(t["diameter_px"]) for t, _ in both])
    t_xy = np.array([(float(t["pupil_x"]), float(t["pupil_y"])) for t, _ in both])

    def pick(*names: str) -> np.ndarray:
        return np.array([[number(r[n]) for n in names] for _, r in both])

    return {
        "diameter raw": float(np.mean(np.abs(pick("axis_major")[:, 0] - t_d))),
        "diameter filtered": float(np.mean(np.abs(pick("diameter_filtered_px")[:, 0] - t_d))),
        "centre raw": float(np.mean(np.linalg.norm(pick("centre_x", "centre_y") - t_xy, axis=1))),
        "centre filtered": float(
            np.mean(np.linalg.norm(pick("centre_x_filtered", "centre_y_filtered") - t_xy, axis=1))
        ),
    }


def check(root: Path, seed: int, *, frames: int, size: tuple[int, int]) -> dict[str, float]:
    """One video written, run through predict.py and scored."""
    video = write_sequence(root / f"video{seed}", frames, seed=seed, size=size)
    out = video / "out"
    if predict_main(["--input", str(video / "eye.mp4"), "--output", str(out)]) != 0:
        raise SystemExit(f"predict.py failed on {video / 'eye.mp4'}")
    truth_blinks = read_rows(video / "blinks.csv")
    hits, extra = matched_blinks(truth_blinks, read_rows(out / "blinks.csv"))
    summary = read_rows(out / "pupil.csv")
    fps = json.loads((out / "summary.json").read_text())["frames_per_s"]
    scores = errors(read_rows(video / "truth.csv"), summary)
    return {"blinks": len(truth_blinks), "found": hits, "extra": extra, **scores, "frames/s": fps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=positive_int_argument, default=6)
    parser.add_argument("--frames", type=positive_int_argument, default=300)
    parser.add_argument("--size", type=size_argument, default="400x640", help="HxW (default 400x640)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = [check(Path(tmp), 1000 + i, frames=args.frames, size=args.size) for i in range(args.videos)]
    columns = list(results[0])
    print("| video | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 1))
    for i, result in enumerate(results):
        print(f"| {1000 + i} | " + " | ".join(f"{v:.3g}" for v in result.values()) + " |")
    totals = {c: sum(r[c] for r in results) for c in ("blinks", "found", "extra")}
    means = {c: np.mean([r[c] for r in results]) for c in columns[3:]}
    print(f"| all | {totals['blinks']} | {totals['found']} | {totals['extra']} | "
          + " | ".join(f"{v:.3g}" for v in means.values()) + " |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
