"""UniFormerV2 video action recognition: the model, official-checkpoint interop, data, training, inference."""
from .errors import CheckpointError, UserError, VideoError
from .factory import create_model, from_pretrained, load_model, save_pretrained
from .model import ModelConfig, UniFormerV2, get_preset, list_models, list_presets
from .weights import export_official_state_dict

__version__ = "0.1.0"


def __getattr__(name):  # heavier parts load on first use
    if name == "VideoClassifier":
        from .inference import VideoClassifier

        return VideoClassifier
    if name == "finetune":
        from .engine.finetune import finetune

        return finetune
    if name == "DataConfig":
        from .data.config import DataConfig

        return DataConfig
    raise AttributeError(f"module 'uniformerv2' has no attribute {name!r}")


__all__ = ["create_model", "load_model", "from_pretrained", "save_pretrained", "list_models", "list_presets",
           "get_preset", "export_official_state_dict", "ModelConfig", "DataConfig", "UniFormerV2",
           "VideoClassifier", "finetune", "UserError", "CheckpointError", "VideoError", "__version__"]
