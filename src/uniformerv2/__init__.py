"""UniFormerV2 video action recognition: the model, official-checkpoint interop, data, training, inference."""
from .errors import CheckpointError, UserError, VideoError
from .model import ModelConfig, UniFormerV2, create_model, get_preset, list_models, list_presets, load_model
from .weights import export_official_state_dict, from_pretrained

__version__ = "0.1.0"


def __getattr__(name):  # heavier parts load on first use
    if name == "VideoClassifier":
        from .inference import VideoClassifier

        return VideoClassifier
    raise AttributeError(f"module 'uniformerv2' has no attribute {name!r}")


__all__ = ["create_model", "load_model", "list_models", "list_presets", "get_preset", "from_pretrained",
           "export_official_state_dict", "ModelConfig", "UniFormerV2", "VideoClassifier",
           "UserError", "CheckpointError", "VideoError", "__version__"]
