"""Choose a candidate pretrained model among a run's kept epochs (scripts/train_pretrained.py) by
pupil IoU on labelled real frames: REAL_ROOT's train/ split, as predict.py runs them. Never on
validation/, which gives the final figure.

    python scripts/pick_pretrained.py runs/pretrained-ms REAL_ROOT
    python scripts/make_pretrained.py runs/pretrained-ms/epochs/epoch-NNN.pt     # then publish it

Prints a line per epoch and the best one's path.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from evaluate import evaluate  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run, real = Path(argv[0]), Path(argv[1])
    epochs = sorted((run / "epochs").glob("epoch-*.pt"))
    if not epochs:
        print(f"error: {run / 'epochs'} holds no epoch-*.pt", file=sys.stderr)
        return 1
    scores = {}
    for path in epochs:
        plain = evaluate(path, real, "train")["plain"]
        scores[path] = plain["pupil_iou"]
        within = plain["located"]["share"]
        print(f"{path.name}: pupil IoU {plain['pupil_iou']:.4f}, within 5 px {within:.1%}", flush=True)
    best = max(scores, key=scores.get)
    print(f"best on {real}/train: {best} (pupil IoU {scores[best]:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
