"""reports.timeseries: timeseries.png, the picture of a recording's pupil.csv and blinks.csv."""

import math

import cv2
import numpy as np
import pytest

from reports.timeseries import diameter_series, summary, write_timeseries

FPS, N = 30.0, 300  # 10 s
BLINK = (120, 149)  # frames 4.0 to 5.0 s: the middle tenth of the recording
MM_OF = {"": "axis_major", "_filtered": "diameter_filtered_px", "_interpolated": "diameter_interpolated_px"}


def recording(
    *, n: int = N, mm_per_px: float | None = None, blinks: tuple[tuple[int, int], ...] = (BLINK,), low=()
) -> tuple[list[dict], list[dict]]:
    """pupil.csv rows and blinks.csv events as predict writes them: a pupil slowly dilating and
    drifting, gone on the blink frames; confidence 0.3 on the frames in `low`."""
    rows = []
    for i in range(n):
        blink = any(a <= i <= b for a, b in blinks)
        d = math.nan if blink else 40 + 5 * math.sin(i / 40)
        x, y = (math.nan, math.nan) if blink else (300 + 20 * math.sin(i / 25), 200 + 10 * math.cos(i / 30))
        row = {"frame": f"{i:05d}.png", "time_s": i / FPS, "pupil_found": not blink, "blink": int(blink)}
        row |= {"confidence": 0.0 if blink else 0.3 if i in low else 0.9, "centre_x": x, "centre_y": y}
        row |= {"axis_major": d, "axis_minor": 0.9 * d, "angle": 10.0, "area_px": math.pi / 4 * 0.9 * d * d}
        row |= {"mean_prob": 0.9, "centre_x_filtered": x, "centre_y_filtered": y, "diameter_filtered_px": d}
        row["diameter_interpolated_px"] = 40 + 5 * math.sin(i / 40)
        if mm_per_px is not None:
            row |= {f"diameter{k}_mm": row[c] * mm_per_px for k, c in MM_OF.items()}
        rows.append(row)
    events = [{"start_frame": a, "end_frame": b, "start_s": a / FPS, "end_s": b / FPS} for a, b in blinks]
    return rows, [e | {"duration_s": e["end_s"] - e["start_s"] + 1 / FPS} for e in events]


def draw(tmp_path, rows, events, name="timeseries.png", **kwargs) -> np.ndarray:
    path = write_timeseries(tmp_path / name, rows, events, **kwargs)
    assert path == tmp_path / name
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (900, 1600, 3)
    return image


@pytest.mark.parametrize(
    "case",
    [
        dict(),
        dict(mm_per_px=0.05),
        dict(blinks=((0, N - 1),)),  # no pupil in any frame
        dict(n=1, blinks=()),
    ],
    ids=["px", "mm", "no-pupil", "one-frame"],
)
def test_writes_a_readable_png(tmp_path, case):
    draw(tmp_path, *recording(**case))


def test_replaces_the_old_png_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "timeseries.png").write_bytes(b"old")
    draw(tmp_path, *recording(n=1, blinks=((0, 0),)))
    assert [p.name for p in tmp_path.iterdir()] == ["timeseries.png"]


def test_blinks_are_shaded_over_their_stretch_of_time(tmp_path):
    rows, events = recording()
    shaded = draw(tmp_path, rows, events, name="a.png").astype(int)
    plain = draw(tmp_path, rows, [], name="b.png").astype(int)
    changed = (np.abs(shaded - plain).sum(axis=2) > 30).mean(axis=0) > 0.4  # columns mostly changed
    columns = np.flatnonzero(changed)
    assert columns.size, "no shading"
    assert columns.size == columns[-1] - columns[0] + 1  # one band
    width = columns.size / 1600
    assert 0.05 < width < 0.1  # a tenth of the axes, which leave room for labels and legend
    assert 0.3 < columns.mean() / 1600 < 0.6


def red(image: np.ndarray) -> int:
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return int(np.count_nonzero((r > 190) & (g < 70) & (b < 70)))


def test_low_confidence_frames_are_ticked_in_red(tmp_path):
    rows, events = recording(low=(30, 200, 250))
    assert red(draw(tmp_path, rows, events, name="a.png")) > 20
    assert red(draw(tmp_path, rows, events, name="b.png", low_confidence=0.2)) == 0


def test_diameter_in_mm_when_the_rows_carry_it():
    rows, _ = recording(mm_per_px=0.05)
    raw, filtered, interpolated, unit = diameter_series(rows)
    assert unit == "mm"
    assert raw[0] == pytest.approx(0.05 * rows[0]["axis_major"])
    assert np.isnan(filtered[BLINK[0]]) and interpolated[BLINK[0]] == pytest.approx(0.05 * 40, rel=0.2)
    raw, _, _, unit = diameter_series(recording()[0])
    assert unit == "px" and raw[0] == rows[0]["axis_major"]


def test_the_title_sums_the_recording_up():
    rows, events = recording(blinks=((30, 39), (120, 149)), mm_per_px=0.05)
    title = summary(rows, events)
    assert "300 frames, pupil found in 260" in title
    assert "2 blinks (12.0 per minute)" in title  # in 10 s
    open_eye = [r["diameter_mm"] for r in rows if not r["blink"]]
    assert f"median diameter {np.median(open_eye):.2f} mm" in title
    assert summary(*recording(n=1, blinks=((0, 0),))).startswith("1 frame, pupil found in 0  |  1 blink")
