"""The UniFormerV2 model family."""
from .factory import build_config, create_model, load_model
from .presets import ARCHS, PRESETS, Preset, get_preset, list_models, list_presets
from .uniformerv2 import ModelConfig, UniFormerV2

__all__ = ["create_model", "load_model", "build_config", "ARCHS", "PRESETS", "Preset", "get_preset", "list_models",
           "list_presets", "ModelConfig", "UniFormerV2"]
