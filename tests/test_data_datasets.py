import warnings

import numpy as np
import pytest
import torch

from uniformerv2.data.datasets import MultiViewDataset, VideoListDataset, chunk_views
from uniformerv2.data.lists import read_video_list, scan_class_folders
from uniformerv2.data import loader
from uniformerv2.data.loader import build_loader, collate, sample_generator
from uniformerv2.data.sampling import sparse_indices
from uniformerv2.data.transforms import build_transform
from uniformerv2.errors import UserError
from videogen import read_code, write_frame_folder, write_video


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    d = tmp_path_factory.mktemp("lib")
    write_video(d / "a.mp4", 40, gop=10)
    write_video(d / "b.avi", 25, codec="mpeg4")
    write_video(d / "c.mp4", 60, gop=10)
    (d / "broken.mp4").write_bytes(b"\x00garbage" * 500)
    (d / "empty.mp4").write_bytes(b"")
    return d


def codes(video_thwc):
    return [read_code(f.numpy()) for f in video_thwc]


def test_list_formats(tmp_path, library):
    (tmp_path / "labels.txt").write_text("riding a bike\nmarching\n")
    (tmp_path / "k.csv").write_text("a.mp4,1\n\n# comment\nsub dir/with space.mp4,marching\n")
    items = read_video_list(tmp_path / "k.csv", root="/data", labels=tmp_path / "labels.txt")
    assert [(i.path, i.label) for i in items] == [("/data/a.mp4", 1), ("/data/sub dir/with space.mp4", 1)]
    (tmp_path / "mm.txt").write_text("x/y.mp4 0\nrel/z.mp4 3\n")
    assert [i.label for i in read_video_list(tmp_path / "mm.txt")] == [0, 3]
    (tmp_path / "ss.txt").write_text("123 45 7\nfolder/9 120 0\n")
    items = read_video_list(tmp_path / "ss.txt", root="frames")
    assert [(i.path, i.num_frames, i.label) for i in items] == [("frames/123", 45, 7), ("frames/folder/9", 120, 0)]
    (tmp_path / "anet.txt").write_text("v_x.mp4 120.5 10 20.25 3\n")
    i = read_video_list(tmp_path / "anet.txt")[0]
    assert (i.total_time, i.start, i.end, i.label) == (120.5, 10.0, 20.25, 3)


@pytest.mark.parametrize("text, message", [
    ("a.mp4,0\nb.mp4\n", ":2: expected"),
    ("a.mp4 0\nb.mp4 dancing\n", ":2: unknown class 'dancing'"),
    ("a.mp4 0\nb.mp4 1 2 3\n", ":2: expected"),
    ("a.mp4 5\n", ":1: label 5 out of range for 2 classes"),
    ("v.mp4 10 20 5 1\n", ":1: bad number"),
])
def test_malformed_lists_name_file_and_line(tmp_path, text, message):
    (tmp_path / "list.txt").write_text(text)
    with pytest.raises(UserError, match=message):
        read_video_list(tmp_path / "list.txt", labels=["x", "y"])


def test_class_folders(tmp_path):
    for cls, n in (("b_class", 2), ("a_class", 1)):
        (tmp_path / cls).mkdir()
        for k in range(n):
            (tmp_path / cls / f"{k}.mp4").write_bytes(b"")
    (tmp_path / "b_class" / "notes.txt").write_text("x")
    items, classes = scan_class_folders(tmp_path)
    assert classes == ["a_class", "b_class"] and [i.label for i in items] == [0, 1, 1]


def test_val_dataset_returns_official_frames(library):
    ds = VideoListDataset(read_list(library, ["c.mp4 2"]), split="val", num_frames=8, raw=True)
    item = ds[0]
    assert item["label"] == 2 and item["index"] == 0 and item["video"].dtype == torch.uint8
    assert codes(item["video"]) == sparse_indices(60, 8, split="val").tolist()


def read_list(library, lines):
    path = library / f"list{abs(hash(tuple(lines)))}.txt"
    path.write_text("".join(f"{library / l}\n" for l in lines))
    return path


def test_train_randomness_keyed_on_seed_epoch_index(library):
    ds = VideoListDataset(read_list(library, ["c.mp4 0", "a.mp4 1"]), split="train", num_frames=8, raw=True,
                          seed=3)
    first = codes(ds[0]["video"])
    assert codes(ds[0]["video"]) == first
    assert all(0 <= c < 60 for c in first) and first == sorted(first)
    ds.set_epoch(1)
    assert codes(ds[0]["video"]) != first
    g1, g2 = sample_generator(3, 1, 0), sample_generator(3, 1, 0)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_untrimmed_training_samples_inside_the_window(library):
    path = library / "anet.txt"
    path.write_text(f"{library / 'c.mp4'} 2.0 1.0 2.0 0\n")          # 60 frames, action in the second half
    ds = VideoListDataset(path, split="train", num_frames=4, raw=True)
    for epoch in range(5):
        ds.set_epoch(epoch)
        assert all(30 <= c < 60 for c in codes(ds[0]["video"]))
    val = VideoListDataset(path, split="val", num_frames=4, raw=True)   # evaluation: the whole video
    assert codes(val[0]["video"]) == sparse_indices(60, 4, split="val").tolist()


def test_frame_folder_dataset(tmp_path):
    write_frame_folder(tmp_path / "vid1", 30)
    (tmp_path / "ss.txt").write_text("vid1 30 4\n")
    ds = VideoListDataset(read_video_list(tmp_path / "ss.txt", root=str(tmp_path)), split="val", num_frames=4,
                          raw=True, bgr=True)
    video = ds[0]["video"]
    assert codes(video) == sparse_indices(30, 4, split="val").tolist()
    assert int(video[0, -2, 3].argmax()) == 2                        # BGR: red lands in the last channel


def test_bgr_models_get_bgr_frames_from_video_files_too(library):
    rgb = VideoListDataset(read_list(library, ["a.mp4 0"]), split="val", num_frames=4, raw=True)[0]["video"]
    bgr = VideoListDataset(read_list(library, ["a.mp4 0"]), split="val", num_frames=4, raw=True, bgr=True)[0]["video"]
    assert torch.equal(bgr, rgb.flip(-1)) and not torch.equal(bgr, rgb)   # raw (T, H, W, 3): channels reversed


def test_repeated_augmentation_and_collate(library):
    tr = build_transform("train", crop_size=32)
    ds = VideoListDataset(read_list(library, ["a.mp4 0", "c.mp4 1"]), split="train", num_frames=4,
                          transform=tr, repeats=2)
    batch = collate([ds[0], ds[1]])
    assert batch["video"].shape == (4, 3, 4, 32, 32)
    assert batch["label"].tolist() == [0, 0, 1, 1] and batch["index"].tolist() == [0, 0, 1, 1]
    assert not torch.equal(batch["video"][0], batch["video"][1])      # two different augmentations
    assert batch["skipped"] == []


def test_bad_files_are_skipped_and_reported(library):
    ds = VideoListDataset(read_list(library, ["a.mp4 0", "broken.mp4 1", "empty.mp4 1"]), split="train",
                          num_frames=4, transform=build_transform("train", crop_size=16))
    bad = ds[1]
    assert "error" in bad and bad["path"].endswith("broken.mp4") and "broken.mp4" in bad["error"]
    loader._WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = collate([ds[0], ds[1], ds[2]])
        collate([ds[1]])
    assert batch["video"].shape[0] == 1 and batch["index"].tolist() == [0]
    assert [p.rsplit("/", 1)[1] for p in batch["skipped"]] == ["broken.mp4", "empty.mp4"]
    assert sum("broken.mp4" in str(w.message) for w in caught) == 1  # warned once per file
    assert collate([ds[1]])["video"] is None
    short = VideoListDataset(read_list(library, ["b.avi 0", "c.mp4 1"]), split="train", num_frames=4, raw=True,
                             min_frames=30)
    assert "too short (25 frames" in short[0]["error"] and "error" not in short[1]


@pytest.mark.filterwarnings("ignore:skipping unreadable video")
def test_loader_with_two_workers_matches_one_process(library):
    lines = ["a.mp4 0", "broken.mp4 1", "c.mp4 1", "empty.mp4 0", "b.avi 1", "missing.mp4 0"]
    ds = VideoListDataset(read_list(library, lines), split="train", num_frames=4,
                          transform=build_transform("train", crop_size=16), seed=7)
    results = []
    for workers in (0, 2):
        loader = build_loader(ds, batch_size=3, num_workers=workers, persistent_workers=False)
        batches = list(loader)
        results.append(batches)
    seq, par = results
    assert sum(b["video"].shape[0] for b in par) == 3
    assert sorted(p.rsplit("/", 1)[1] for b in par for p in b["skipped"]) == ["broken.mp4", "empty.mp4",
                                                                              "missing.mp4"]
    for a, b in zip(seq, par):
        assert torch.equal(a["video"], b["video"]) and a["skipped"] == b["skipped"]


def test_multiview_dataset_and_chunks(library):
    to_layout = lambda clip, generator=None: clip.permute(3, 0, 1, 2)    # keep pixels: (3, T, H, W)
    ds = MultiViewDataset(read_list(library, ["c.mp4 1"]), transform=to_layout, num_frames=4, num_clips=3,
                          num_crops=1)
    item = ds[0]
    assert item["video"].shape == (3, 3, 4, 48, 64) and item["path"].endswith("c.mp4")
    for k in range(3):
        got = [read_code(f) for f in item["video"][k].permute(1, 2, 3, 0).numpy()]
        assert got == sparse_indices(60, 4, clip=k, num_clips=3).tolist()
    full = MultiViewDataset(read_list(library, ["c.mp4 1"]), num_frames=4, num_clips=2, num_crops=3,
                            transform=build_transform("test", crop_size=32, num_crops=3))[0]["video"]
    assert full.shape == (6, 3, 4, 32, 32)
    chunks = chunk_views(full, max_bytes=2 * full[0].numel() * 4)
    assert [c.shape[0] for c in chunks] == [2, 2, 2] and torch.equal(torch.cat(chunks), full)
    assert [c.shape[0] for c in chunk_views(full, max_views=4)] == [4, 2]


def test_package_import_is_light_and_exports_resolve():
    import subprocess
    import sys

    # the typed DataConfig record is all a plain import loads (models carry one)
    code = ("import sys, uniformerv2.data as d; loaded = [m for m in sys.modules if m == 'av' or "
            "m.startswith('uniformerv2.data.') and m != 'uniformerv2.data.config']; assert not loaded, loaded; "
            "missing = [n for n in d.__all__ if getattr(d, n, None) is None]; assert not missing, missing")
    subprocess.run([sys.executable, "-c", code], check=True)
