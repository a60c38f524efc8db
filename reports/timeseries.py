"""timeseries.png: a recording's pupil.csv as a picture, for a person to glance at before reading
numbers. Top, the pupil diameter over time (mm when the rows carry a scale, else px): each
frame's raw diameter as a light dot, the filtered diameter as a line, and the interpolated one
dashed across blinks. Bottom, the pupil centre's x and y, raw dots and filtered lines. Blinks are
shaded in both, frames whose pupil was found with low confidence are ticked in red along the
bottom, and the title sums the recording up: frames, blinks, blinks per minute, median diameter.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from core.runfolder import atomic_path

SIZE_PX, DPI = (1600, 900), 100
RAW, FILTERED, BRIDGE = "#9ecae1", "#08519c", "#e6550d"  # light blue dots, dark blue, orange
CENTRE = {"x": ("#a1d99b", "#238b45"), "y": ("#bcbddc", "#6a51a3")}  # (raw, filtered): greens, purples
BLINK, LOW = "#969696", "#d62728"  # grey shading, red ticks


def column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """One column as floats, NaN where a row lacks it or leaves it empty."""
    values = [row.get(key) for row in rows]
    return np.array([math.nan if v is None or v == "" else float(v) for v in values], dtype=float)


def flags(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """A yes/no column as bools: True, 1 or "True" (as read back from a CSV) are yes."""
    return np.array([str(row.get(key)).lower() in ("true", "1", "1.0") for row in rows], dtype=bool)


def diameter_series(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Raw, filtered and interpolated diameters and their unit: mm where the rows carry them."""
    unit = "mm" if rows and "diameter_mm" in rows[0] else "px"
    raw = column(rows, "diameter_mm" if unit == "mm" else "axis_major")
    return raw, column(rows, f"diameter_filtered_{unit}"), column(rows, f"diameter_interpolated_{unit}"), unit


def bridges(interpolated: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """The interpolated values over the gaps and one frame either side (so the dashes meet the
    filtered line), NaN elsewhere."""
    shown = gaps.copy()
    shown[1:] |= gaps[:-1]
    shown[:-1] |= gaps[1:]
    return np.where(shown, interpolated, np.nan)


def frame_step(times: np.ndarray) -> float:
    """The time between frames: the median step, or 1 with fewer than two times."""
    steps = np.diff(times[np.isfinite(times)])
    return float(np.median(steps)) if steps.size and np.median(steps) > 0 else 1.0


def focus(ax: Any, raw: np.ndarray, lines: list[np.ndarray]) -> None:
    """y limits around the lines and the bulk of the raw dots (2nd-98th percentile): a few stray
    frames (a lid half over the pupil) fall off the scale rather than squash the curves."""
    raw = raw[np.isfinite(raw)]
    values = [line[np.isfinite(line)] for line in lines] + [np.percentile(raw, [2, 98]) if raw.size else raw]
    values = np.concatenate(values)
    if values.size:
        low, high = float(values.min()), float(values.max())
        pad = 0.08 * (high - low) or 0.05 * abs(high) or 1.0
        ax.set_ylim(low - pad, high + pad)


def plural(n: int, noun: str) -> str:
    """'1 blink', '2 blinks'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary(rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """The title: frames, pupil found, blinks and their rate, median diameter of open-eye frames."""
    times = column(rows, "time_s")
    found = flags(rows, "pupil_found")
    line = (
        f"{plural(len(rows), 'frame')}, pupil found in {int(found.sum())}  |  {plural(len(events), 'blink')}"
    )
    if rows and np.isfinite(times).all():
        minutes = (times.max() - times.min() + frame_step(times)) / 60
        line += f" ({len(events) / minutes:.1f} per minute)"
    raw, *_, unit = diameter_series(rows)
    open_eye = raw[found & ~flags(rows, "blink") & np.isfinite(raw)]
    if open_eye.size:
        line += f"  |  median diameter {np.median(open_eye):.2f} {unit}"
    return line


def shade(ax: Any, events: list[dict[str, Any]], times: np.ndarray, *, label: str | None) -> None:
    """Blinks as grey bands from the start of their first frame to the end of their last."""
    step = frame_step(times)
    for i, event in enumerate(events):
        start, end = times[int(event["start_frame"])], times[int(event["end_frame"])] + step
        ax.axvspan(start, end, color=BLINK, alpha=0.3, lw=0, label=label if i == 0 else None)


def tick_low_confidence(ax: Any, times: np.ndarray, low: np.ndarray, *, label: str | None) -> None:
    """Red ticks along the bottom of the panel at the low-confidence frames."""
    if low.any():
        bottom = np.full(int(low.sum()), 0.02)  # in axes units: just above the bottom edge
        along = ax.get_xaxis_transform()  # x in data, y in axes units
        ax.plot(times[low], bottom, "|", color=LOW, ms=9, mew=2, transform=along, label=label)


def draw_diameter(ax: Any, rows: list[dict[str, Any]], times: np.ndarray) -> None:
    """The top panel: raw dots, filtered line, interpolated dashes across blinks."""
    raw, filtered, interpolated, unit = diameter_series(rows)
    gaps = flags(rows, "blink")
    if np.isfinite(filtered).any():  # smoothed: its gaps too (without, the raw diameter has them)
        gaps |= ~np.isfinite(filtered)
    ax.plot(times, raw, ".", color=RAW, ms=4, label="raw (ellipse major axis)")
    ax.plot(times, filtered, "-", color=FILTERED, lw=1.8, label="filtered")
    bridge = bridges(interpolated, gaps)
    ax.plot(times, bridge, "--", color=BRIDGE, lw=1.8, label="interpolated across blinks")
    focus(ax, raw, [filtered, bridge])
    ax.set_ylabel(f"pupil diameter ({unit})")


def draw_centre(ax: Any, rows: list[dict[str, Any]], times: np.ndarray) -> None:
    """The bottom panel: the centre's x and y, raw dots and filtered lines."""
    raws, lines = [], []
    for axis, (light, dark) in CENTRE.items():
        raws.append(column(rows, f"centre_{axis}"))
        lines.append(column(rows, f"centre_{axis}_filtered"))
        ax.plot(times, raws[-1], ".", color=light, ms=4, label=f"{axis} raw")
        ax.plot(times, lines[-1], "-", color=dark, lw=1.5, label=f"{axis} filtered")
    focus(ax, np.concatenate(raws), lines)
    ax.set_ylabel("pupil centre (px, y down)")


def save_atomically(fig: Any, path: Path) -> Path:
    """Save the figure as PNG, whole or not at all (`core.runfolder.atomic_path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=DPI, format="png")
    return path


def write_timeseries(
    path: Path,
    rows: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    low_confidence: float = 0.5,
) -> Path:
    """Draw `rows` (pupil.csv's, one per frame) and blink `events` (blinks.csv's) as a
    SIZE_PX PNG at `path`, written atomically; frames whose pupil was found with confidence
    below `low_confidence` are ticked in red. Returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, time_label = column(rows, "time_s"), "time (s)"
    if not np.isfinite(times).all():  # no clock: frame numbers
        times, time_label = np.arange(len(rows), dtype=float), "frame"
    found = flags(rows, "pupil_found")
    low = found & (column(rows, "confidence") < low_confidence)
    size = (SIZE_PX[0] / DPI, SIZE_PX[1] / DPI)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=size, height_ratios=(3, 2))
    try:
        draw_diameter(top, rows, times)
        draw_centre(bottom, rows, times)
        for ax, first in ((top, True), (bottom, False)):
            shade(ax, events, times, label="blink" if first else None)
            tick_low_confidence(ax, times, low, label=f"confidence < {low_confidence:g}" if first else None)
            ax.grid(alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
        if not found.any():
            message = "no pupil found in any frame" if rows else "no frames"
            top.text(0.5, 0.5, message, transform=top.transAxes, ha="center", va="center", fontsize=18)
        else:
            for ax in (top, bottom):  # beside the panel: nothing of the data hidden
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=10, frameon=False)
        bottom.set_xlabel(time_label)
        fig.suptitle(summary(rows, events), fontsize=14)
        fig.tight_layout()
        return save_atomically(fig, Path(path))
    finally:
        plt.close(fig)
