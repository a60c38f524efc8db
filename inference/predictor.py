"""Run a trained model on eye images: one `Predictor` for `.pt` checkpoints and `.onnx` exports.

    predictor = load_predictor("best.onnx")        # or "best.pt"
    probs = predictor.probabilities([image_u8])    # [(H, W) pupil probability] at the image's size
    geometry = pupil_geometry(pupil_mask(probs[0]), probs[0])   # pupillometry.geometry: its ellipse

Frames run in their own shape (a checkpoint, or an export that takes any size: padded with their
edges to a multiple of 16; "auto", the default, at the scale the model was trained at, so none of
the compute goes to padding; "native" at their own pixels) or fitted into a fixed input size
without changing their aspect ratio (scaled, edges repeated: `data.fit_image`), preprocessed
with the model's own stored preprocessing (`data.preprocess`), run, and the pupil probability of
the frame's region is mapped back onto the frame's own pixels; `pupil_mask` keeps the pupil's
blob of it. What a model file says about itself (input size, preprocessing, how it was trained)
is its `models.card.ModelCard`, read from a checkpoint or from an ONNX file's metadata.
`predict.py` and `evaluate.py` both run models through this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from config import PreprocessConfig
from core.errors import one_line
from data import Fit, fit_image, preprocess
from models.card import ModelCard, ModelFileError

PRETRAINED_DIR = (
    Path(__file__).resolve().parents[1] / "pretrained"
)  # the model that ships with the repository


def model_file(name: str | Path, suffix: str = ".onnx") -> Path:
    """`name` as a path, or for "pretrained" the shipped model's `suffix` file (.onnx or .pt)."""
    if str(name) == "pretrained":
        return PRETRAINED_DIR / f"tiny_efficientvit{suffix}"
    return Path(name)


class MissingMetadataError(ModelFileError):
    """An ONNX file without this project's metadata: input size or preprocessing must be supplied."""


AUTO, NATIVE = "auto", "native"  # --img-size: each frame at the model's scale, or at its own pixels
SIZE_MULTIPLE = 16  # a frame run at its own shape is padded to a multiple of the encoder's stride
AUTO_MIN_SIDE = 128  # and a smaller one scaled up to this: each stage's map wider than its window
RunSize = tuple[int, int] | str  # a fixed input size (frames fitted into it), AUTO or NATIVE


def own_size(shape: tuple[int, ...], trained: tuple[int, int] | None = None) -> tuple[tuple[int, int], float]:
    """The input size a frame of `shape` runs at in its own shape, and its scale: with `trained`,
    the (H, W) a model was trained at, the scale fitting it into that size would take, whatever the
    frame's orientation (AUTO: the model's scale, with no padding to compute); without, 1 (NATIVE:
    the frame's own pixels). Padded with its edges to a multiple of SIZE_MULTIPLE, and at least
    AUTO_MIN_SIDE a side."""
    h, w = shape[:2]
    scale = 1.0 if trained is None else min(min(trained) / min(h, w), max(trained) / max(h, w))
    scale = max(scale, AUTO_MIN_SIDE / min(h, w))
    return tuple(-(-round(v * scale) // SIZE_MULTIPLE) * SIZE_MULTIPLE for v in (h, w)), scale


def batch_fits(
    shapes: Sequence[tuple[int, ...]], size: RunSize, trained: tuple[int, int]
) -> tuple[tuple[int, int], list[float]]:
    """The input size a batch of frames of `shapes` runs at, and each frame's largest scale
    (`Fit.of`'s max_scale): fitted into a fixed `size`, or for AUTO and NATIVE each at its own
    scale (`own_size`) in the smallest size that holds them all."""
    if size not in (AUTO, NATIVE):
        return size, [math.inf] * len(shapes)
    owns = [own_size(shape, trained if size == AUTO else None) for shape in shapes]
    return (max(s[0] for s, _ in owns), max(s[1] for s, _ in owns)), [scale for _, scale in owns]


def prepare_batch(
    images: Sequence[np.ndarray],
    img_size: RunSize,
    config: PreprocessConfig,
    trained: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """(H_i, W_i) uint8 frames -> (B, 1, H, W) float32 model input: fit (`data.fit_image`; see
    `batch_fits` for `img_size` and `trained`), then preprocess."""
    size, scales = batch_fits([image.shape for image in images], img_size, trained)
    return np.stack(
        [preprocess(fit_image(image, size, max_scale=scale)[0], config)[None]
         for image, scale in zip(images, scales, strict=True)]
    )  # fmt: skip


def pupil_probability(logits: np.ndarray) -> np.ndarray:
    """(B, 2, H, W) logits -> (B, H, W) softmax probability of the pupil class."""
    # the two-class softmax is a sigmoid of the logit difference: 1 / (1 + e^(l0 - l1)), e^x by
    # OpenCV (SIMD, twice numpy's speed); e^x = inf for large x gives 0, not NaN
    diff = (logits[:, 0] - logits[:, 1]).astype(np.float32)
    exp = cv2.exp(diff.reshape(-1, diff.shape[-1])).reshape(diff.shape)
    return np.float32(1.0) / (np.float32(1.0) + exp)


class Predictor:
    """A model ready to run: its card (input size, preprocessing, how it was trained), the file it
    came from, the backend ("pytorch" or "onnxruntime"), a logits function, and whether it takes
    any input size (`dynamic`: a checkpoint, or an ONNX export of the cpu profile)."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        card: ModelCard,
        source: Path,
        backend: str,
        *,
        dynamic: bool = False,
    ) -> None:
        self._run = run
        self.card = card
        self.source = source
        self.backend = backend
        self.dynamic = dynamic
        # a model that takes any size runs each frame in its own shape at the scale it was trained
        # at (no padding to compute); `use_size` changes it
        self.run_size: RunSize = AUTO if dynamic else card.img_size
        self.file_bytes = source.stat().st_size

    @property
    def img_size(self) -> tuple[int, int]:
        """The size the model was trained at (its card's)."""
        return self.card.img_size

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self.card.preprocess

    def use_size(self, size: RunSize | None) -> Predictor:
        """Run frames fitted into (H, W) `size`, or each in its own shape (AUTO: at the model's
        trained scale; NATIVE: at its own pixels; a model that takes any size only); None keeps the
        model's own choice (AUTO where it takes any size, else its fixed size). Returns self; a
        ValueError names what cannot be."""
        if size is None:
            return self
        named = size in (AUTO, NATIVE)
        if not named and tuple(size) == self.img_size:
            self.run_size = self.img_size
            return self
        asked = size if named else "x".join(map(str, size))
        if not self.dynamic:
            raise ValueError(
                f"{self.source}: its input is fixed at {'x'.join(map(str, self.img_size))}; --img-size "
                f"{asked} needs a checkpoint or an export of the cpu profile (any size)"
            )
        if not named and self.backend == "onnxruntime" and min(size) < AUTO_MIN_SIDE:
            # its graph windows every map, where PyTorch's attends globally to one smaller than a window
            raise ValueError(
                f"{self.source}: --img-size {asked}: this file takes {AUTO_MIN_SIDE} or more a side"
            )
        self.run_size = size if named else (int(size[0]), int(size[1]))
        return self

    @property
    def size_name(self) -> str:
        """What `run_size` means, for people: "auto", "native" or "HxW"."""
        return self.run_size if isinstance(self.run_size, str) else "x".join(map(str, self.run_size))

    def input_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The (H, W) a frame of `shape` runs at."""
        return batch_fits([shape], self.run_size, self.img_size)[0]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(B, 1, H, W) preprocessed input -> (B, 2, H, W) float32 logits; (H, W) is `img_size`
        for a model of a fixed size."""
        fixed = not self.dynamic and tuple(batch.shape[2:]) != self.img_size
        if batch.ndim != 4 or batch.shape[1] != 1 or fixed:
            h, w = self.img_size
            raise ValueError(f"expected a (B, 1, {h}, {w}) batch, got shape {tuple(batch.shape)}")
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    def model_probabilities(self, images: Sequence[np.ndarray], tta: bool = False) -> np.ndarray:
        """(B, H, W) pupil probability at the batch's input size (`batch_fits`) of (H_i, W_i) uint8
        frames run as one batch; `tta` averages the softmax of the frame and of its horizontal
        mirror (`mirrored_probabilities`)."""
        if tta:
            plain, mirrored = self.mirrored_probabilities(images)
            return 0.5 * (plain + mirrored)
        return pupil_probability(self.logits(self._batch(images)))

    def mirrored_probabilities(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Flip TTA's two halves, each (B, H, W) as `model_probabilities`: the frames' pupil
        probability, and that of their horizontal mirrors, mirrored back."""
        batch = self._batch(images)
        mirrored = pupil_probability(self.logits(np.ascontiguousarray(batch[..., ::-1])))
        return pupil_probability(self.logits(batch)), mirrored[..., ::-1]

    def _batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return prepare_batch(images, self.run_size, self.preprocess_config, self.img_size)

    def on_frames(self, images: Sequence[np.ndarray], prob: np.ndarray) -> list[np.ndarray]:
        """`model_probabilities`' (B, H, W) mapped back onto each frame's own (H_i, W_i) pixels."""
        size, scales = batch_fits([image.shape for image in images], self.run_size, self.img_size)
        probs = []
        for image, p, scale in zip(images, prob, scales, strict=True):
            h, w = image.shape[:2]
            p = np.ascontiguousarray(Fit.of(image.shape, size, scale).crop(p))
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

    return Predictor(run, card, path, "pytorch", dynamic=True)


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
    logits = outputs[0].shape
    if len(logits) != 4 or logits[1] not in (2, None) and not isinstance(logits[1], str):
        raise ModelFileError(
            f"{path}: its output has shape {logits}; a pupil model gives (batch, 2, H, W) logits "
            "(background, pupil)"
        )
    card = ModelCard.from_onnx_metadata(session.get_modelmeta().custom_metadata_map, path)
    if card is not None and preprocess_config is not None:
        raise ValueError(f"{path} stores its own preprocessing; do not pass it")
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

    return Predictor(run, card, path, "onnxruntime", dynamic=_static_size(inputs[0].shape) is None)


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
    `img_size` (H, W) and `preprocess_config` are for an ONNX file without this project's
    metadata (the input size defaults to the file's static input shape); other files ignore the
    first (`Predictor.use_size` picks the size frames run at) and refuse the second.
    Raises `CheckpointError` or `ModelFileError` (both ValueError) with a one-line message.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        if preprocess_config is not None:
            raise ValueError(f"{path} stores its own preprocessing; do not pass it")
        return _torch_predictor(path, device)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    return _onnx_predictor(path, providers, threads, img_size, preprocess_config, spin)
