"""Synthetic temporal-reasoning benchmark: classes that differ only in the order of their frames.

``generate(out_dir, ...)`` writes a small Something-Something-like dataset of H.264 clips with
Kinetics-style ``train/val/test.csv`` lists; ``render_clip(class_name, seed, ...)`` returns one clip
as a ``(T, H, W, 3)`` uint8 array.  Each class is paired with its time reversal, so a frame-by-frame
model with time-averaged features is at chance while a model of time (UniFormerV2) is not.
"""
from .dataset import SPLITS, generate, video_target_masks, write_mp4
from .render import AVAILABLE_CLASSES, DEFAULT_CLASSES, PAIRS, SHAPES, render_clip, target_masks

__all__ = ["generate", "render_clip", "target_masks", "video_target_masks", "write_mp4", "AVAILABLE_CLASSES",
           "DEFAULT_CLASSES", "PAIRS", "SHAPES", "SPLITS"]
