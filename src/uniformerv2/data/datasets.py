"""Datasets over video lists.

``VideoListDataset`` item: ``{"video": (3, T, H, W) from the transform (float, or uint8
with ``build_transform(..., output="uint8")``) or, with ``raw=True``, the decoded uint8 (T, H, W, 3),
"label": int, "index": int, "path": str}``; with ``repeats=k > 1`` the video is (k, ...) holding k augmented
clips of the same video (repeated augmentation; ``collate`` flattens them). A video that cannot be read gives
``{"error": message, "path", "index", "label"}`` instead: ``collate`` drops it and lists it, nothing is ever
substituted. ``MultiViewDataset`` item: ``video`` (V, 3, T, H, W), V = clips x crops, clip-major.

Random draws use a generator keyed on (seed, epoch, index) (``set_epoch``), so they do not depend on workers.

``cache``: keep every decoded video in memory (all of its frames, uint8) and sample clips from there, for
datasets small enough to hold (a few thousand short low-resolution clips): ``cache=True`` for a cache of
the dataset's own, or a ``ClipCache`` shared by several datasets over the same files. Call ``preload()``
before iterating with DataLoader workers: entries a worker adds stay in that worker.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import VideoError
from .decode import DEFAULT_TIMEOUT_S, check_indices, read_clip
from .lists import VideoItem, read_labels, read_video_list, scan_class_folders
from .loader import sample_generator
from .sampling import dense_indices, sparse_indices

__all__ = ["VideoListDataset", "MultiViewDataset", "ClipCache", "chunk_views", "read_video_list", "read_labels", "VideoItem",
           "scan_class_folders"]


class ClipCache:
    """Decoded videos by path: ``(all frames (N, H, W, 3) uint8, VideoInfo)``, or the ``VideoError`` that
    reading the video raised (an unreadable video is tried once). ``nbytes``: the frames held."""

    def __init__(self):
        self._entries: dict = {}
        self.nbytes = 0

    def __len__(self):
        return len(self._entries)

    def __contains__(self, path) -> bool:
        return str(path) in self._entries

    def get(self, path, decode):
        """The entry of ``path``, decoded with ``decode() -> (frames, info)`` on the first request."""
        key = str(path)
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = decode()
                self.nbytes += entry[0].nbytes
            except VideoError as e:
                entry = e
            self._entries[key] = entry
        if isinstance(entry, VideoError):
            raise VideoError(str(entry))
        return entry


class _Base(Dataset):
    window_in_train = False

    def __init__(self, items, *, num_frames, sampling, stride, backend, timeout, seed, frame_template,
                 frame_start_index, bgr, list_options, cache=None):
        self.classes = None
        if isinstance(items, (str, bytes)) or hasattr(items, "__fspath__"):
            if os.path.isdir(items):
                items, self.classes = scan_class_folders(items)
            else:
                items = read_video_list(items, **(list_options or {}))
        self.items = list(items)
        if sampling not in ("sparse", "dense"):
            raise ValueError(f"sampling must be 'sparse' or 'dense', got {sampling!r}")
        if sampling == "dense" and not stride:
            raise ValueError("dense sampling needs a stride")
        self.num_frames, self.sampling, self.stride = num_frames, sampling, stride
        self.backend, self.timeout, self.seed, self.bgr = backend, timeout, seed, bgr
        self.frame_template, self.frame_start_index = frame_template, frame_start_index
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()   # seen by persistent workers
        self.cache = ClipCache() if cache is True else (None if cache is None or cache is False else cache)

    def __len__(self):
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def generator(self, index: int) -> torch.Generator:
        return sample_generator(self.seed, self.epoch, index)

    def indices(self, num_frames: int, split: str, clip: int, num_clips: int, g) -> np.ndarray:
        if self.sampling == "sparse":
            return sparse_indices(num_frames, self.num_frames, split=split, clip=clip, num_clips=num_clips,
                                  generator=g)
        return dense_indices(num_frames, self.num_frames, self.stride, split=split, clip=clip,
                             num_clips=num_clips, generator=g)

    def read(self, item: VideoItem, sample):
        """Decode with ``sample(num_frames) -> indices``; untrimmed items in training sample inside their
        annotated [start, end] window (official ANet train: offset int(V * start / total), length
        V * (end - start) / total frames).  ``bgr``: the model wants BGR frames (the official SSv1/v2
        checkpoints), whatever the source, video file or frame folder."""
        folder = {}
        if item.num_frames is not None:
            folder = dict(num_frames=item.num_frames, template=self.frame_template,
                          start_index=self.frame_start_index)
        if item.total_time is not None and self.window_in_train:
            def windowed(n):
                first = int(n * item.start / item.total_time)
                length = max(1, min(int(n * (item.end - item.start) / item.total_time), n - first))
                return first + np.asarray(sample(length))
            frames, indices, info = self._read_clip(item, windowed, folder)
        else:
            frames, indices, info = self._read_clip(item, sample, folder)
        if self.bgr:
            frames = np.ascontiguousarray(frames[..., ::-1])
        return frames, indices, info

    def _read_clip(self, item: VideoItem, sample, folder: dict):
        if self.cache is None:
            return read_clip(item.path, sample, self.backend, timeout=self.timeout, **folder)
        every, info = self.cache.get(item.path, lambda: self._read_all(item, folder))
        indices = check_indices(item.path, sample(len(every)), len(every))
        return every[indices], indices, info

    def _read_all(self, item: VideoItem, folder: dict):
        frames, _, info = read_clip(item.path, np.arange, self.backend, timeout=self.timeout, **folder)
        return frames, info

    def preload(self, progress: bool = False) -> int:
        """Decode every video into the cache now (needs ``cache``); returns how many could not be read."""
        if self.cache is None:
            raise ValueError("preload() needs a dataset built with cache=True or a ClipCache")
        bad = 0
        items = self.items
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc="decode", unit="video", leave=False)
        for item in items:
            folder = {} if item.num_frames is None else dict(
                num_frames=item.num_frames, template=self.frame_template, start_index=self.frame_start_index)
            try:
                self.cache.get(item.path, lambda: self._read_all(item, folder))
            except VideoError:
                bad += 1
        return bad

    def failure(self, index: int, item: VideoItem, error: Exception) -> dict:
        return {"error": " ".join(str(error).split()), "path": item.path, "index": index, "label": item.label}


class VideoListDataset(_Base):
    """One clip per video, for training (``split="train"``) or validation (``"val"``/``"test"``).

    Videos with fewer than ``min_frames`` frames count as failures (the official code accepts any length and
    repeats frames, hence the default 1). ``on_error="raise"`` raises instead of returning a failure marker.
    """

    def __init__(self, items, *, split: str = "train", num_frames: int = 8, transform=None,
                 sampling: str = "sparse", stride: int | None = None, repeats: int = 1, raw: bool = False,
                 backend: str = "pyav", timeout: float | None = DEFAULT_TIMEOUT_S, seed: int = 0,
                 frame_template: str = "img_{:05d}.jpg", frame_start_index: int = 1, bgr: bool = False,
                 on_error: str = "skip", min_frames: int = 1, list_options: dict | None = None, cache=None):
        super().__init__(items, num_frames=num_frames, sampling=sampling, stride=stride, backend=backend,
                         timeout=timeout, seed=seed, frame_template=frame_template,
                         frame_start_index=frame_start_index, bgr=bgr, list_options=list_options, cache=cache)
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.split, self.transform, self.repeats, self.raw, self.on_error = split, transform, repeats, raw, on_error
        self.window_in_train = split == "train"
        self.min_frames = min_frames

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        g = self.generator(index)
        def sample(n):
            if n < self.min_frames:
                raise VideoError(f"{item.path}: too short ({n} frames, at least {self.min_frames} wanted)")
            return self.indices(n, self.split, 0, 1, g)
        try:
            frames = self.read(item, sample)[0]
        except VideoError as e:
            if self.on_error == "raise":
                raise
            return self.failure(index, item, e)
        clip = torch.from_numpy(frames)
        if self.raw or self.transform is None:
            videos = [clip] * self.repeats
        else:
            videos = [self.transform(clip, generator=g) for _ in range(self.repeats)]
        out = {"video": videos[0] if self.repeats == 1 else torch.stack(videos), "label": item.label,
               "index": index, "path": item.path}
        if self.repeats > 1:
            out["repeats"] = self.repeats
        return out


class MultiViewDataset(_Base):
    """All ``num_clips`` temporal clips x ``num_crops`` spatial crops of each video, for testing.

    ``transform`` must be a test transform with ``num_crops`` crops; all clips are decoded in one pass.
    """

    def __init__(self, items, *, transform, num_frames: int = 8, num_clips: int = 4, num_crops: int = 3,
                 sampling: str = "sparse", stride: int | None = None, backend: str = "pyav",
                 timeout: float | None = DEFAULT_TIMEOUT_S, frame_template: str = "img_{:05d}.jpg",
                 frame_start_index: int = 1, bgr: bool = False, list_options: dict | None = None, cache=None):
        super().__init__(items, num_frames=num_frames, sampling=sampling, stride=stride, backend=backend,
                         timeout=timeout, seed=0, frame_template=frame_template,
                         frame_start_index=frame_start_index, bgr=bgr, list_options=list_options, cache=cache)
        self.transform, self.num_clips, self.num_crops = transform, num_clips, num_crops

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]

        def all_clips(n):
            return np.concatenate([self.indices(n, "test", k, self.num_clips, None) for k in range(self.num_clips)])
        try:
            frames = torch.from_numpy(self.read(item, all_clips)[0])
        except VideoError as e:
            return self.failure(index, item, e)
        t = self.num_frames
        views = []
        for k in range(self.num_clips):
            v = self.transform(frames[k * t:(k + 1) * t])
            views += list(v) if v.ndim == 5 else [v]
        return {"video": torch.stack(views), "label": item.label, "index": index, "path": item.path}


def chunk_views(video: torch.Tensor, *, max_views: int | None = None, max_bytes: int | None = None,
                bytes_per_element: int | None = None) -> list[torch.Tensor]:
    """Split views (V, 3, T, H, W) into chunks of at most ``max_views`` views or ``max_bytes`` of input
    (at ``bytes_per_element``, default the tensor's element size), at least one view per chunk."""
    per_view = video[0].numel() * (bytes_per_element or video.element_size())
    limit = video.shape[0]
    if max_views is not None:
        limit = min(limit, max_views)
    if max_bytes is not None:
        limit = min(limit, max(1, max_bytes // per_view))
    return list(torch.split(video, max(1, limit)))
