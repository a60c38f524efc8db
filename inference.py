"""Run a trained model on eye images: one `Predictor` for `.pt` checkpoints and `.onnx` exports.

    predictor = load_predictor("best.onnx")        # or "best.pt"
    probs = predictor.probabilities([image_u8])    # [(H, W) pupil probability] at the image's size
    geometry = pupil_geometry(probs[0] > PUPIL_THRESHOLD, probs[0])

Frames are fitted into the model's input size without changing their aspect ratio (scaled,
edges repeated: `data.fit_image`), preprocessed with the model's own stored preprocessing
(`data.preprocess`), run, and the pupil probability of the frame's region is resized back to the
frame's own size. What a model file says about itself (input size, preprocessing, how it was
trained) is its `models.card.ModelCard`, read from a checkpoint or from an ONNX file's metadata.
`predict.py` and `evaluate.py` both run models through this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cli import one_line
from config import PreprocessConfig
from data import Fit, fit_image, preprocess
from models.card import ModelCard, ModelFileError

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"  # the model that ships with the repository


def model_file(name: str | Path, suffix: str = ".onnx") -> Path:
    """`name` as a path, or for "pretrained" the shipped model's `suffix` file (.onnx or .pt)."""
    if str(name) == "pretrained":
        return PRETRAINED_DIR / f"tiny_efficientvit{suffix}"
    return Path(name)


class MissingMetadataError(ModelFileError):
    """An ONNX file without this project's metadata: input size or preprocessing must be supplied."""


def prepare_batch(
    images: Sequence[np.ndarray], img_size: tuple[int, int], config: PreprocessConfig
) -> np.ndarray:
    """(H_i, W_i) uint8 frames -> (B, 1, H, W) float32 model input: fit (`data.fit_image`), then
    preprocess. `Fit.of(image.shape, img_size)` says where each frame went."""
    return np.stack([preprocess(fit_image(image, img_size)[0], config)[None] for image in images])


PUPIL_THRESHOLD = 0.5  # pupil where its probability is above this: predicting, evaluating, exporting


def pupil_probability(logits: np.ndarray) -> np.ndarray:
    """(B, 2, H, W) logits -> (B, H, W) softmax probability of the pupil class."""
    # the two-class softmax is a sigmoid of the logit difference: 1 / (1 + e^(l0 - l1)), e^x by
    # OpenCV (SIMD, twice numpy's speed); e^x = inf for large x gives 0, not NaN
    diff = (logits[:, 0] - logits[:, 1]).astype(np.float32)
    exp = cv2.exp(diff.reshape(-1, diff.shape[-1])).reshape(diff.shape)
    return np.float32(1.0) / (np.float32(1.0) + exp)


class Predictor:
    """A model ready to run: its card (input size, preprocessing, how it was trained), the file it
    came from, the backend ("pytorch" or "onnxruntime") and a logits function."""

    def __init__(
        self, run: Callable[[np.ndarray], np.ndarray], card: ModelCard, source: Path, backend: str
    ) -> None:
        self._run = run
        self.card = card
        self.source = source
        self.backend = backend
        self.file_bytes = source.stat().st_size

    @property
    def img_size(self) -> tuple[int, int]:
        return self.card.img_size

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self.card.preprocess

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(B, 1, H, W) preprocessed input at `img_size` -> (B, 2, H, W) float32 logits."""
        if batch.ndim != 4 or batch.shape[1] != 1 or tuple(batch.shape[2:]) != self.img_size:
            h, w = self.img_size
            raise ValueError(f"expected a (B, 1, {h}, {w}) batch, got shape {tuple(batch.shape)}")
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    def model_probabilities(self, images: Sequence[np.ndarray], tta: bool = False) -> np.ndarray:
        """(B, H, W) pupil probability at `img_size` of (H_i, W_i) uint8 frames run as one batch;
        `tta` averages the softmax of the frame and of its horizontal mirror (mirrored back)."""
        batch = prepare_batch(images, self.img_size, self.preprocess_config)
        prob = pupil_probability(self.logits(batch))
        if tta:
            mirrored = pupil_probability(self.logits(np.ascontiguousarray(batch[..., ::-1])))
            prob = 0.5 * (prob + mirrored[..., ::-1])
        return prob

    def on_frames(self, images: Sequence[np.ndarray], prob: np.ndarray) -> list[np.ndarray]:
        """`model_probabilities`' (B, H, W) mapped back onto each frame's own (H_i, W_i) pixels."""
        probs = []
        for image, p in zip(images, prob, strict=True):
            h, w = image.shape[:2]
            p = np.ascontiguousarray(Fit.of(image.shape, self.img_size).crop(p))
            probs.append(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) if p.shape != (h, w) else p)
        return probs

    def probabilities(
        self, images: Sequence[np.ndarray], tta: bool = False, batch_size: int = 8
    ) -> list[np.ndarray]:
        """Pupil probability of each (H_i, W_i) uint8 frame, as (H_i, W_i) float32 in [0, 1], run
        in batches of `batch_size`; `tta` as in `model_probabilities`."""
        probs: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            probs += self.on_frames(chunk, self.model_probabilities(chunk, tta))
        return probs


def _torch_predictor(path: Path, device: str) -> Predictor:
    import torch

    from models import fuse_model, pick_device
    from models.checkpoint import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(path)
    model = model_from_checkpoint(state, path)
    card = ModelCard.from_checkpoint(state, path).completed(model)  # counted before BN folding
    device = pick_device(device)  # a bad or missing device is a ValueError, as in training
    model = fuse_model(model).to(device)

    @torch.no_grad()
    def run(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return Predictor(run, card, path, "pytorch")


def _static_size(shape: list) -> tuple[int, int] | None:
    h, w = shape[2:]
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _non_finite_initializers(path: Path) -> list[str]:
    """Names of an ONNX file's floating-point weights (initializers, Constant nodes) that hold a
    NaN or an infinity."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = [(n.output[0], a.t) for n in graph.node if n.op_type == "Constant" for a in n.attribute]
    named = [(t.name, t) for t in graph.initializer] + [(name, t) for name, t in constants if t.dims]
    arrays = ((name, numpy_helper.to_array(t)) for name, t in named)
    return [name for name, array in arrays if array.dtype.kind == "f" and not np.isfinite(array).all()]


def _onnx_predictor(
    path: Path,
    providers: Sequence[str] | None,
    threads: int | None,
    img_size: tuple[int, int] | None,
    preprocess_config: PreprocessConfig | None,
    spin: bool,
) -> Predictor:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin:  # idle threads sleep instead of spinning, leaving the cores to other work
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(
            str(path), options, providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        reason = one_line(exc)[:200]
        raise ModelFileError(f"{path}: not a loadable ONNX model ({reason})") from None
    bad = _non_finite_initializers(path)
    if bad:
        count = f"{len(bad)} tensor{'s' * (len(bad) > 1)}"
        raise ModelFileError(
            f"{path} holds non-finite weights ({count}, e.g. {bad[0]}): a diverged run? "
            "Export an earlier checkpoint"
        )
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 1 or len(outputs) != 1:
        shapes = [i.shape for i in inputs]
        raise ModelFileError(
            f"{path}: expected one (batch, 1, H, W) input and one output, got inputs {shapes}"
        )
    card = ModelCard.from_onnx_metadata(session.get_modelmeta().custom_metadata_map, path)
    if card is not None and (img_size is not None or preprocess_config is not None):
        raise ValueError(f"{path} stores its own input size and preprocessing; do not pass them")
    if card is None:
        static = _static_size(inputs[0].shape)
        if img_size is not None and static is not None and tuple(img_size) != static:
            given, fixed = "x".join(map(str, img_size)), "x".join(map(str, static))
            raise ModelFileError(
                f"{path}: input size {given} given, but the file's input is fixed at {fixed}"
            )
        img_size = img_size or static
        if img_size is None or preprocess_config is None:
            missing = " and ".join(
                n for n, v in (("input size", img_size), ("preprocessing", preprocess_config)) if v is None
            )
            raise MissingMetadataError(f"{path} has no tiny-pupil-seg metadata: its {missing} must be given")
        card = ModelCard(path.stem, {}, (int(img_size[0]), int(img_size[1])), preprocess_config)
    input_name = inputs[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: batch})[0]

    return Predictor(run, card, path, "onnxruntime")


def load_predictor(
    path: str | Path,
    *,
    device: str = "cpu",
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    img_size: tuple[int, int] | None = None,
    preprocess_config: PreprocessConfig | None = None,
    spin: bool = True,
) -> Predictor:
    """A `Predictor` for a `.onnx` export (onnxruntime) or any other file as a `.pt` checkpoint.

    `device` is for checkpoints; `providers` (default CPU) and `threads` (default: all cores)
    for onnxruntime, and `spin`: whether its threads spin between operators, which is fastest
    when nothing else runs but takes cores that other threads (decoding, writing) need.
    `img_size` (H, W) and `preprocess_config` are only for an ONNX file without this project's
    metadata (the input size defaults to the file's static input shape).
    Raises `CheckpointError` or `ModelFileError` (both ValueError) with a one-line message.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        if img_size is not None or preprocess_config is not None:
            raise ValueError(f"{path} stores its own input size and preprocessing; do not pass them")
        return _torch_predictor(path, device)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    return _onnx_predictor(path, providers, threads, img_size, preprocess_config, spin)


def _largest_component(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The largest 8-connected blob of an (H, W) bool mask, as a bool mask of the box around all
    of the mask's pixels, and that box's (x, y) offset; None for an empty mask. Working in the
    box keeps a 640x400 frame to the pupil's few thousand pixels."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if w == 0:
        return None
    box = np.ascontiguousarray(mask[y : y + h, x : x + w]).view(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(box, connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # label 0 is the background
    return labels == largest, (x, y)


def pupil_geometry(mask: np.ndarray, prob: np.ndarray | None = None) -> dict[str, Any]:
    """Pupil found, centre, ellipse and area from an (H, W) bool mask; its largest component only.

    The centre is that of an ellipse fitted to the component's outline (`cv2.fitEllipse`, which
    needs 5 outline points; smaller blobs fall back to the centroid and a circle of equal area).
    `axis_major` / `axis_minor` are full axis lengths in pixels, `angle` the major axis'
    direction in degrees [0, 180) clockwise from +x (image y points down). `mean_prob` is the mean
    of `prob` over the component. Without a pupil, `found` is False and every number is NaN.
    """
    keys = ("centre_x", "centre_y", "axis_major", "axis_minor", "angle", "area_px", "mean_prob")
    found = _largest_component(mask.astype(bool, copy=False))
    if found is None:
        return {"found": False, **dict.fromkeys(keys + ("centroid_x", "centroid_y"), math.nan)}
    component, (x0, y0) = found
    box_h, box_w = component.shape
    ys, xs = np.nonzero(component)
    area = int(xs.size)
    centroid = (float(xs.mean()) + x0, float(ys.mean()) + y0)
    diameter = 2 * math.sqrt(area / math.pi)  # of the circle with the component's area
    (cx, cy), major, minor, angle = centroid, diameter, diameter, 0.0
    contours, _ = cv2.findContours(
        component.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(x0, y0)
    )
    outline = max(contours, key=len)
    if len(outline) >= 5:
        ellipse = cv2.fitEllipse(outline)
        if all(math.isfinite(v) for v in (*ellipse[0], *ellipse[1])):  # degenerate for a straight line
            (cx, cy), (d1, d2), angle = ellipse
            # OpenCV gives the direction of its first axis; report the major axis' direction
            major, minor, angle = (d1, d2, angle) if d1 >= d2 else (d2, d1, angle + 90.0)
    return {
        "found": True,
        "centre_x": float(cx),
        "centre_y": float(cy),
        "axis_major": float(major),
        "axis_minor": float(minor),
        "angle": float(angle) % 180.0,
        "area_px": area,
        "mean_prob": float(prob[y0:, x0:][:box_h, :box_w][component].mean())
        if prob is not None
        else math.nan,
        "centroid_x": centroid[0],
        "centroid_y": centroid[1],
    }
