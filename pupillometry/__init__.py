"""From per-frame pupil masks to measurements over time: how much to trust each frame
(`confidence`), blinks and lost frames, smoothing that does not lag, and diameter in millimetres.
`predict.py` runs these steps on a video or an ordered folder of frames."""
