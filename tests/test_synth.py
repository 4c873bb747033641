"""Synthetic temporal-order benchmark: determinism, file formats, and the time-reversal property."""
from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest

from uniformerv2.cli import main
from uniformerv2.synth import AVAILABLE_CLASSES, DEFAULT_CLASSES, PAIRS, generate, render_clip

SMALL = dict(videos_per_class=4, frames=8, size=32, splits=(2, 1, 1), progress=False)


def _decode(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _read_list(root: Path, split: str) -> list[tuple[str, int]]:
    rows = []
    for line in (root / f"{split}.csv").read_text().splitlines():
        path, label = line.split(",")
        rows.append((path, int(label)))
    return rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return root, generate(root, seed=3, workers=2, **SMALL)


def test_render_is_deterministic():
    a = render_clip("moving left", 7, frames=8, size=32)
    assert a.shape == (8, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_clip("moving left", 7, frames=8, size=32))
    assert not np.array_equal(a, render_clip("moving left", 8, frames=8, size=32))


@pytest.mark.parametrize("fwd,rev,attr", PAIRS)
def test_pair_is_exact_time_reversal(fwd, rev, attr):
    for seed in range(3):
        f = render_clip(fwd, seed, frames=12, size=32, balance_opacity=True)
        r = render_clip(rev, seed, frames=12, size=32, balance_opacity=True)
        assert np.array_equal(f, r[::-1])
        # same multiset of frames, same time-averaged frame: no per-frame statistic separates them
        key = lambda clip: sorted(hashlib.sha1(x.tobytes()).hexdigest() for x in clip)  # noqa: E731
        assert key(f) == key(r)
        assert np.array_equal(f.astype(np.int64).sum(0), r.astype(np.int64).sum(0))
        assert not np.array_equal(f, r)  # but the order differs: the clip really changes over time


def test_target_moves_and_stays_in_view():
    clip = render_clip("moving right", 0, frames=16, size=64).astype(np.float32)
    diff = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2, 3))
    assert (diff > 1.0).all()  # something visibly changes between every pair of frames


def test_dataset_layout_and_decoding(dataset):
    root, summary = dataset
    labels = (root / "labels.txt").read_text().splitlines()
    assert labels == DEFAULT_CLASSES == summary["classes"]
    counts = {"train": 2, "val": 1, "test": 1}
    seen = set()
    for split, per_class in counts.items():
        rows = _read_list(root, split)
        assert len(rows) == per_class * len(labels) == summary["splits"][split]["count"]
        assert sorted({y for _, y in rows}) == list(range(len(labels)))
        for rel, y in rows:
            assert not Path(rel).is_absolute() and rel.endswith(".mp4") and rel not in seen
            seen.add(rel)
            with av.open(str(root / rel)) as c:
                s = c.streams.video[0]
                assert s.codec_context.name == "h264" and s.format.name == "yuv420p"
            frames = _decode(root / rel)
            assert frames.shape == (8, 32, 32, 3)
    assert summary["videos"] == len(seen) == 4 * len(labels)


def test_decoded_pair_is_reversed_up_to_codec_noise(dataset):
    root, _ = dataset
    f = _decode(root / "videos/moving_right/0001.mp4").astype(np.float32)
    r = _decode(root / "videos/moving_left/0001.mp4").astype(np.float32)
    ref = render_clip("moving right", np.random.SeedSequence([3, 0, 1]), frames=8, size=32)
    assert np.abs(f - ref).mean() < 8  # decoded file is the rendered clip
    assert np.abs(f - r[::-1]).mean() < 0.7 * np.abs(f - r).mean()  # codec noise vs the motion


def test_generate_is_deterministic(tmp_path, dataset):
    root, _ = dataset
    generate(tmp_path / "a", seed=3, workers=1, **SMALL)
    generate(tmp_path / "b", seed=4, workers=1, **SMALL)
    for rel, _ in _read_list(root, "train")[:4]:
        same = _decode(tmp_path / "a" / rel)
        assert np.array_equal(same, _decode(root / rel))
        assert not np.array_equal(same, _decode(tmp_path / "b" / rel))
    assert (tmp_path / "a" / "train.csv").read_text() == (root / "train.csv").read_text()


def test_split_fractions_and_errors(tmp_path):
    s = generate(tmp_path, classes=["growing", "shrinking"], videos_per_class=10, frames=4,
                 size=16, splits=(0.6, 0.2, 0.2), workers=1, progress=False)
    assert [s["splits"][k]["count"] for k in ("train", "val", "test")] == [12, 4, 4]
    with pytest.raises(ValueError, match="unknown"):
        generate(tmp_path, classes=["moving sideways"], progress=False)
    with pytest.raises(ValueError, match="even"):
        generate(tmp_path, size=33, progress=False)
    with pytest.raises(ValueError, match="add up"):
        generate(tmp_path, videos_per_class=5, splits=(2, 1, 1), progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["synth", str(out), "--classes", "fading in,fading out", "--videos-per-class", "3",
               "--frames", "4", "--size", "16", "--workers", "1", "--quiet"])
    assert rc == 0 and "wrote 6 videos" in capsys.readouterr().err
    assert (out / "labels.txt").read_text() == "fading in\nfading out\n"
    assert main(["synth", str(out), "--classes", "moving left,nope"]) == 2
    assert "unknown" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["synth", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and all(c in text for c in AVAILABLE_CLASSES)
