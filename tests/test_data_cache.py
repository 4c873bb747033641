"""ClipCache: datasets that keep decoded videos in memory give exactly what decoding each time gives."""
import warnings

import pytest
import torch

from uniformerv2.data import ClipCache, sparse_indices, MultiViewDataset, VideoListDataset, build_loader, build_transform, collate
from uniformerv2.errors import VideoError
from videogen import read_code, write_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    write_video(d / "a.mp4", 40, gop=10)
    write_video(d / "c.mp4", 60, gop=10)
    (d / "broken.mp4").write_bytes(b"\x00garbage" * 500)
    (d / "list.txt").write_text(f"{d / 'a.mp4'} 0\n{d / 'broken.mp4'} 1\n{d / 'c.mp4'} 1\n")
    return d


def _items(ds):
    return [ds[i] for i in range(len(ds))]


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]


@pytest.mark.parametrize("split", ["train", "val"])
def test_cached_items_equal_decoded_items_every_epoch(videos, split):
    kw = dict(split=split, num_frames=8, transform=build_transform(split, crop_size=32), seed=5)
    plain = VideoListDataset(videos / "list.txt", **kw)
    cached = VideoListDataset(videos / "list.txt", cache=True, **kw)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for a, b in zip(_items(plain), _items(cached)):
            _same(a, b)
    assert len(cached.cache) == 3 and cached.cache.nbytes == (40 + 60) * 48 * 64 * 3


def test_cached_frames_are_the_sampled_frames(videos):
    raw = VideoListDataset(videos / "list.txt", split="val", num_frames=4, raw=True, cache=True)
    assert [read_code(f) for f in raw[2]["video"].numpy()] == sparse_indices(60, 4, split="val").tolist()


def test_unreadable_video_is_tried_once_and_reported_each_time(videos, monkeypatch):
    cache = ClipCache()
    ds = VideoListDataset(videos / "list.txt", split="train", num_frames=4, cache=cache,
                          transform=build_transform("train", crop_size=16))
    assert ds.preload() == 1 and len(cache) == 3
    import uniformerv2.data.datasets as datasets

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")
    monkeypatch.setattr(datasets, "read_clip", no_decoding)
    for _ in range(2):
        bad = ds[1]
        assert "error" in bad and "broken.mp4" in bad["error"] and bad["label"] == 1
    with pytest.raises(VideoError, match="broken.mp4"):
        VideoListDataset(videos / "list.txt", split="val", num_frames=4, cache=cache, on_error="raise")[1]
    # a second dataset (another split, another pipeline) over the same files shares the decoded frames
    test = MultiViewDataset(videos / "list.txt", num_frames=4, num_clips=2, num_crops=1, cache=cache,
                            transform=build_transform("test", crop_size=32))
    assert test[2]["video"].shape == (2, 3, 4, 32, 32) and "error" in test[1]


def test_preload_needs_a_cache(videos):
    with pytest.raises(ValueError, match="cache"):
        VideoListDataset(videos / "list.txt", num_frames=4).preload()


@pytest.mark.filterwarnings("ignore:skipping unreadable video")
def test_preloaded_cache_serves_loader_workers(videos):
    ds = VideoListDataset(videos / "list.txt", split="train", num_frames=4, cache=True, seed=3,
                          transform=build_transform("train", crop_size=16))
    ds.preload()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seq = list(build_loader(ds, batch_size=2, num_workers=0))
        par = list(build_loader(ds, batch_size=2, num_workers=2, persistent_workers=False))
    for a, b in zip(seq, par):
        assert torch.equal(a["video"], b["video"]) and a["skipped"] == b["skipped"]
    assert collate([ds[0], ds[1]])["skipped"][0].endswith("broken.mp4")
