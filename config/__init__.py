"""Every setting, in one config dataclass per concern (`settings`), how a setting is declared and
checked (`fields`), and the command lines made from them (`flags`). Standard library only: Modal's
local side imports it."""

from config.fields import Config, OnResume, base_type, is_config, setting, type_hints
from config.settings import (
    CLASS_NAMES,
    MIN_SIZE,
    MODEL_NAMES,
    AdaptConfig,
    AugmentConfig,
    DataConfig,
    ExportConfig,
    ModelName,
    PreprocessConfig,
    PupillometryConfig,
    SettingError,
    SyntheticStyle,
    TrainConfig,
)

__all__ = [
    "AdaptConfig",
    "AugmentConfig",
    "base_type",
    "CLASS_NAMES",
    "Config",
    "DataConfig",
    "ExportConfig",
    "is_config",
    "MIN_SIZE",
    "MODEL_NAMES",
    "ModelName",
    "OnResume",
    "PreprocessConfig",
    "PupillometryConfig",
    "setting",
    "SettingError",
    "SyntheticStyle",
    "TrainConfig",
    "type_hints",
]
