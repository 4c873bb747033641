"""Weights: safe file reading, the official / image-ViT layouts, our model-directory format, loading into a
model.  Nothing here imports the model package: loading works on any module with our parameter names."""
from .io import load_state_dict
from .loading import LoadReport, arm_backbone, load_checkpoint
from .official import official_to_ours, ours_to_official


def export_official_state_dict(model) -> dict:
    """The model's weights in the official UniFormerV2 layout (names, shapes, ``backbone.`` prefix)."""
    return ours_to_official(model.state_dict())


__all__ = ["load_state_dict", "LoadReport", "arm_backbone", "load_checkpoint", "official_to_ours",
           "ours_to_official", "export_official_state_dict"]
