"""One line of the real-eyes figures from an `evaluate.py --json` file, for the measuring scripts.

python scripts/score_line.py eval.json "pretrained 50 frames"
"""

import json
import sys


def score_line(result: dict, label: str) -> str:
    """Pupil IoU, share located within 5 px, median located error and detection rate (plain)."""
    r = result["plain"]
    median = r["located"]["median_error_px"]
    detection = r["detection"]
    found = 1 - detection["missed"] / detection["with_pupil"] if detection["with_pupil"] else float("nan")
    return (
        f"{label:24s} pupil IoU {r['pupil_iou']:.3f}  within 5 px {r['located']['share']:.1%}  "
        f"median centre error {'missed' if median is None else f'{median:.2f} px'}  detected {found:.1%}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        print(score_line(json.load(f), sys.argv[2]))
