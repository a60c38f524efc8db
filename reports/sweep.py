"""The comparison table of a Modal sweep (modal_app.sweep). Standard library only: the sweep's
container has neither torch nor numpy."""

from __future__ import annotations

import statistics
from typing import Any


def one_line(text: str, limit: int = 160) -> str:
    """The first line of an error, shortened, with no '|' to split a Markdown cell."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    return (first if len(first) <= limit else f"{first[: limit - 3]}...").replace("|", "/")


def comparison_table(results: list[tuple[dict[str, Any], Any]]) -> str:
    """One Markdown row per (config, summary or exception): best val pupil IoU, its mIoU, s/epoch.
    A failed run (a summary with an "error", or the exception its call ended with) gets one row
    saying so, on one line."""
    lines = [
        "| run | model | lr | seed | val pupil IoU | val mIoU | best epoch | s/epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for job, result in results:
        head = f"| {job['run_name']} | {job['model']} | {job['lr']:g} | {job['seed']} |"
        if isinstance(result, BaseException):
            result = {"error": f"{type(result).__name__}: {result}"}
        if "error" in result:
            lines.append(f"{head} failed: {one_line(result['error'])} | | | |")
            continue
        best = next((h for h in result["history"] if h["epoch"] == result["best_epoch"]), {})
        seconds = statistics.median(result["epoch_seconds"]) if result["epoch_seconds"] else float("nan")
        lines.append(
            f"{head} {best.get('val/pupil_iou', float('nan')):.4f} | {best.get('val/miou', float('nan')):.4f}"
            f" | {result['best_epoch']} | {seconds:.1f} |"
        )
    return "\n".join(lines)
