"""Run a trained model on eye images (`predictor`): one `Predictor` for `.pt` checkpoints and `.onnx`
exports, frames of any size in, the pupil probability on the frame's own pixels out. The pupil's
blob and its ellipse are `pupillometry.geometry`'s, re-exported here beside the model that makes
the probability."""

from inference.predictor import (
    AUTO,
    AUTO_MIN_SIDE,
    NATIVE,
    PRETRAINED_DIR,
    SIZE_MULTIPLE,
    MissingMetadataError,
    Predictor,
    RunSize,
    batch_fits,
    load_predictor,
    model_file,
    own_size,
    prepare_batch,
    pupil_probability,
)
from pupillometry.geometry import PUPIL_THRESHOLD, pupil_geometry, pupil_mask

__all__ = [
    "AUTO",
    "NATIVE",
    "AUTO_MIN_SIDE",
    "PRETRAINED_DIR",
    "SIZE_MULTIPLE",
    "MissingMetadataError",
    "Predictor",
    "RunSize",
    "batch_fits",
    "load_predictor",
    "model_file",
    "own_size",
    "prepare_batch",
    "pupil_probability",
    "PUPIL_THRESHOLD",
    "pupil_geometry",
    "pupil_mask",
]
