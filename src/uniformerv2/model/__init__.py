"""The UniFormerV2 model family: the reference model, its config, the archs and the official recipes."""
from .config import ModelConfig
from .presets import ARCHS, PRESETS, Preset, build_config, get_preset, list_models, list_presets
from .uniformerv2 import UniFormerV2

__all__ = ["ARCHS", "PRESETS", "Preset", "build_config", "get_preset", "list_models", "list_presets", "ModelConfig",
           "UniFormerV2"]
