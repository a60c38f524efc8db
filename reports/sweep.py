"""The comparison table of a Modal sweep (modal_app.sweep). Standard library only: the sweep's
container has neither torch nor numpy."""

from __future__ import annotations

import statistics
from typing import Any


def comparison_table(results: list[tuple[dict[str, Any], Any]]) -> str:
    """One Markdown row per (config, summary or exception): best val pupil IoU, its mIoU, s/epoch."""
    lines = [
        "| run | model | lr | seed | val pupil IoU | val mIoU | best epoch | s/epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for job, result in results:
        head = f"| {job['run_name']} | {job['model']} | {job['lr']:g} | {job['seed']} |"
        if isinstance(result, BaseException):
            lines.append(f"{head} failed: {type(result).__name__}: {str(result)[:120]} | | | |")
            continue
        best = next((h for h in result["history"] if h["epoch"] == result["best_epoch"]), {})
        seconds = statistics.median(result["epoch_seconds"]) if result["epoch_seconds"] else float("nan")
        lines.append(
            f"{head} {best.get('val/pupil_iou', float('nan')):.4f} | {best.get('val/miou', float('nan')):.4f}"
            f" | {result['best_epoch']} | {seconds:.1f} |"
        )
    return "\n".join(lines)
