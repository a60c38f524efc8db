"""What a model file says about itself: one `ModelCard`, written to and read from checkpoints and
ONNX metadata alike.

A checkpoint (`.pt`, a torch.save'd dict) holds the card's fields as top-level keys, the weights
(`model_state`) and, for a training run's best.pt / last.pt, what resuming needs (`train_config`,
optimizer, scheduler, scaler and RNG state, best metric and epoch, history, MLflow run id; see
train_efficientvit.py). An ONNX export holds the card in its `metadata_props`, one JSON string per
field, beside `format` (ONNX_FORMAT), `checkpoint` (the file it came from) and `exporter`.
Checkpoints written before the card kept the training seed, style and data folder only inside
`train_config`; `from_checkpoint` reads them from there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import CLASS_NAMES, MODEL_NAMES, PreprocessConfig
from core.errors import ModelFileError

CHECKPOINT_FORMAT = "tiny-pupil-seg/checkpoint-v1"
ONNX_FORMAT = "tiny-pupil-seg/onnx-v1"


@dataclass(frozen=True)
class ModelCard:
    """A model's name and architecture, the input it takes, and how and on what it was trained."""

    model_name: str
    model_config: dict[str, Any]  # rebuilds the architecture: models.build_model(name, **config)
    img_size: tuple[int, int]  # (H, W) input; frames of other sizes are fitted into it
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    class_names: tuple[str, ...] = CLASS_NAMES
    num_params: int | None = None  # trainable, before BatchNorm folding; None: unknown
    epoch: int | None = None  # the training epoch the weights are from
    metrics: dict[str, float] = field(default_factory=dict)  # validation metrics (val/...) at that epoch
    train_seed: int | None = None  # with the style, picks the synthetic validation frames
    train_style: str = "full"  # the synthetic eyes it trained on (data.synthetic.render.STYLES)
    train_data_dir: str | None = None  # the dataset folder it trained on; None: synthetic or unknown
    quantization: dict[str, Any] | None = None  # how an 8-bit ONNX file was quantised

    @classmethod
    def of(cls, model: Any, model_name: str, img_size: tuple[int, int], **fields: Any) -> ModelCard:
        """The card of a built `SegmentationModel` (its config and parameter count)."""
        size = (int(img_size[0]), int(img_size[1]))
        return cls(
            model_name, model.config.to_dict(), size, num_params=model.get_num_trainable_params(), **fields
        )

    def completed(self, model: Any) -> ModelCard:
        """The card with the architecture and parameter count of `model`, the model it describes
        (files written before the card may lack them)."""
        return dataclasses.replace(
            self, model_config=model.config.to_dict(), num_params=model.get_num_trainable_params()
        )

    def build_model(self) -> Any:
        """The architecture this card describes, with fresh weights."""
        from models import build_model

        return build_model(self.model_name, **self.model_config)

    # ---- checkpoints ----

    def to_checkpoint(self) -> dict[str, Any]:
        """The card as checkpoint keys (JSON types), with the checkpoint format."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(img_size=list(self.img_size), preprocess=self.preprocess.to_dict())
        values["class_names"] = list(self.class_names)
        return {"format": CHECKPOINT_FORMAT, **values}

    @classmethod
    def from_checkpoint(cls, state: Any, path: str | Path) -> ModelCard:
        """The card of a loaded checkpoint dict; a ModelFileError naming `path` if it holds none."""
        required = ("model_name", "model_config", "model_state", "preprocess", "img_size")
        if not isinstance(state, dict) or any(key not in state for key in required):
            raise ModelFileError(
                f"{path} is not a tiny-pupil-seg checkpoint (missing model name/config/state)"
            )
        if state["model_name"] not in MODEL_NAMES:
            raise ModelFileError(
                f"{path} holds unknown model {state['model_name']!r}; known: {', '.join(MODEL_NAMES)}"
            )
        if state.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:  # none: written before formats
            found = state["format"]
            raise ModelFileError(f"{path}: format {found!r}; this version reads {CHECKPOINT_FORMAT!r}")
        train = state.get("train_config") or {}
        data = train.get("data") if isinstance(train.get("data"), dict) else None
        legacy = {  # before the card: inside train_config; runs from before styles used "narrow"
            "train_seed": train.get("seed"),
            "train_style": (data.get("synthetic_style") or "narrow") if data is not None else "full",
            "train_data_dir": data.get("data_dir") if data is not None else None,
        }
        return cls._from_values({**legacy, **state}, path)

    # ---- ONNX metadata ----

    def to_onnx_metadata(self, **extra: Any) -> dict[str, str]:
        """`metadata_props` for an ONNX file: each field and `extra` as a JSON string (the training
        data folder by its name alone)."""
        values = {**self.to_checkpoint(), **extra}
        del values["format"]
        if self.train_data_dir:  # a file to ship: the folder's name, not where it sat on the trainer's disk
            values["train_data_dir"] = Path(self.train_data_dir).name
        if self.quantization is None:
            del values["quantization"]
        return {"format": ONNX_FORMAT, **{key: json.dumps(value) for key, value in values.items()}}

    @classmethod
    def from_onnx_metadata(cls, props: dict[str, str], path: str | Path) -> ModelCard | None:
        """The card in an ONNX file's metadata; None for a file without this project's metadata."""
        if "format" not in props:
            return None
        if props["format"] != ONNX_FORMAT:
            raise ModelFileError(
                f"{path}: metadata format {props['format']!r}; this version reads {ONNX_FORMAT!r}"
            )
        values: dict[str, Any] = {}
        for key, text in props.items():
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError:  # entries other tools add stay plain strings
                values[key] = text
        for key, kind in (("model_name", str), ("img_size", list), ("preprocess", dict)):
            if not isinstance(values.get(key), kind):
                raise ModelFileError(f"{path}: metadata entry {key!r} is missing or malformed")
        return cls._from_values(values, path)

    @classmethod
    def _from_values(cls, values: dict[str, Any], path: str | Path) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        card = {k: v for k, v in values.items() if k in known and v is not None}
        try:
            card["img_size"] = (int(card["img_size"][0]), int(card["img_size"][1]))
            card["preprocess"] = PreprocessConfig.from_dict(card["preprocess"])
            card["class_names"] = tuple(card.get("class_names", CLASS_NAMES))
            card["metrics"] = {k: v for k, v in (card.get("metrics") or {}).items() if k.startswith("val/")}
            card["model_config"] = json.loads(json.dumps(card.get("model_config", {})))  # tuples as lists
            return cls(**card)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ModelFileError(f"{path}: malformed model description ({exc})") from None
