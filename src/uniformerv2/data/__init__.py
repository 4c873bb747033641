"""Video data pipeline: decoding, frame sampling, clip transforms, datasets and loaders.

Layouts: decoded clips are uint8 RGB ``(T, H, W, 3)``; transformed clips are float ``(3, T, H, W)``; batches
are ``(B, 3, T, H, W)``, the model's input. Names are imported lazily, so ``import uniformerv2.data`` is cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "config": ["DataConfig"],
    "decode": ["VideoInfo", "probe", "read_frames", "read_clip", "iter_frames", "BACKENDS", "default_threads"],
    "sampling": ["sparse_indices", "dense_indices", "uniform_indices", "sliding_windows", "window_indices"],
    "transforms": ["build_transform", "ClipTransform", "resize_short_side", "center_crop", "three_crops",
                   "random_resized_crop_box", "normalize", "DeviceAugment", "DEFAULT_MEAN", "DEFAULT_STD"],
    "randaugment": ["RandAugment"],
    "mixup": ["Mixup", "one_hot_smooth"],
    "device_augment": ["TrainAugment", "collate_clips", "augment_generator"],
    "transcode": ["prepare_dataset", "transcode", "PrepareSettings"],
    "datasets": ["VideoListDataset", "MultiViewDataset", "ClipCache", "read_video_list", "read_labels", "VideoItem",
                 "chunk_views", "scan_class_folders"],
    "loader": ["build_loader", "collate", "seed_worker", "sample_generator"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
