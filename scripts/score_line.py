"""One line of the real-eyes figures from an `evaluate.py --json` file, for the measuring scripts.

python scripts/score_line.py eval.json "pretrained 50 frames"
"""

import json
import sys


def score_line(result: dict, label: str) -> str:
    """Pupil IoU, share located within 5 px, median located error and detection rate (plain)."""
    r = result["plain"]
    located, detection = r["located"], r["detection"]
    if not detection["with_pupil"]:
        return f"{label:24s} pupil IoU {r['pupil_iou']:.3f}  (no labelled pupil to locate)"
    median = "missed" if located["median_error_px"] is None else f"{located['median_error_px']:.2f} px"
    found = 1 - detection["missed"] / detection["with_pupil"]
    return (
        f"{label:24s} pupil IoU {r['pupil_iou']:.3f}  within {located['within_px']:g} px "
        f"{located['share']:.1%}  median centre error {median}  detected {found:.1%}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        print(score_line(json.load(f), sys.argv[2]))
