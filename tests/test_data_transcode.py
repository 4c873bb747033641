"""``uniformerv2 prepare``: frame i of a prepared file is frame i of its source (pixel for pixel in lossless mode,
after the same resize; by the stamped frame number and PSNR at the defaults), timing and counts kept, audio
dropped, the sparse reader seeking to the keyframe before each sampled frame; the dataset run: new list, report,
failures listed, resumable, sources untouched."""
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from videogen import read_code, trim_edit_list, write_video
from uniformerv2.cli import main
from uniformerv2.data import _pyav
from uniformerv2.data.decode import probe, read_clip, read_frames
from uniformerv2.data.transcode import PrepareSettings, frame_psnr, output_size, prepare_dataset, transcode
from uniformerv2.data.sampling import sparse_indices
from uniformerv2.errors import UserError

LOSSLESS = PrepareSettings(lossless=True, short_side=None)


def timestamps(path) -> list[float]:
    """Presentation times (s) of the video packets, sorted, relative to the first."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = sorted(float(p.pts * s.time_base) for p in c.demux(s) if p.size and p.pts is not None)
    return [round(t - pts[0], 4) for t in pts]


@pytest.mark.parametrize("kind", ["bframes", "vfr", "trimmed", "mid_gop", "audio_and_cover"])
def test_lossless_prepared_frames_equal_the_source_frames(tmp_path, kind):
    """Every frame, pixel for pixel, against the reader's definition of frame i of the source (edit lists,
    open cuts, variable frame rate, a cover picture and audio included)."""
    kw = {"bframes": dict(gop=12, bframes=3),
          "vfr": dict(timestamps=[0.0, 0.05, 0.2, 0.21, 0.5, 0.55, 0.9, 1.0, 1.3, 1.31, 1.6, 2.0] * 1 + [2.1 + 0.1 * i for i in range(18)], gop=10),
          "trimmed": dict(gop=10, bframes=2),
          "mid_gop": dict(gop=16, drop_packets=5),
          "audio_and_cover": dict(gop=10, audio=True, thumbnail=True)}[kind]
    src = write_video(tmp_path / f"{kind}.mp4", 30, width=48, height=32, **kw)
    if kind == "trimmed":
        trim_edit_list(src, 4)
    ref = read_frames(src, range(probe(src).num_frames))
    r = transcode(src, tmp_path / "out" / "p.mp4", LOSSLESS, psnr_frames=4)
    got = read_frames(tmp_path / "out" / "p.mp4", range(probe(tmp_path / "out" / "p.mp4").num_frames))
    assert got.shape == ref.shape and np.array_equal(got, ref)
    assert r["frames"] == len(ref) and r["psnr"] == 100.0
    with av.open(str(tmp_path / "out" / "p.mp4")) as c:
        assert [s.type for s in c.streams] == ["video"]                  # audio and the cover dropped
    if kind == "vfr":
        assert timestamps(tmp_path / "out" / "p.mp4") == pytest.approx(timestamps(src), abs=2e-3)


def test_resized_frames_equal_the_source_frames_resized(tmp_path):
    """With a resize, frame i of the prepared file is frame i of the source resized (swscale bicubic, what the
    transcoder applies): equal pixel for pixel in lossless mode; at the defaults the stamped frame numbers
    all read back and every frame is close to its reference."""
    src = write_video(tmp_path / "s.mp4", 40, width=96, height=64, gop=20, bframes=2)
    assert output_size(96, 64, 32) == (48, 32) and output_size(64, 96, 32) == (32, 48)
    assert output_size(95, 63, 320) == (94, 62)                         # never enlarged; even sides
    ref = []
    with av.open(str(src)) as c:                                        # an independent decode of the source
        for f in c.decode(video=0):
            ref.append(f.reformat(width=48, height=32, format="rgb24", interpolation="BICUBIC").to_ndarray())
    transcode(src, tmp_path / "ll.mp4", PrepareSettings(lossless=True, short_side=32))
    got = read_frames(tmp_path / "ll.mp4", range(40))
    assert got.shape == (40, 32, 48, 3) and np.array_equal(got, np.stack(ref))
    r = transcode(src, tmp_path / "d.mp4", PrepareSettings(short_side=32), psnr_frames=40)
    got = read_frames(tmp_path / "d.mp4", range(40))
    assert [read_code(f) for f in got] == list(range(40))
    assert min(frame_psnr(a, b) for a, b in zip(ref, got)) > 35 and r["psnr"] > 40
    assert (r["width"], r["height"], r["source_width"], r["source_height"]) == (48, 32, 96, 64)


def count_decoded_packets(monkeypatch) -> list:
    calls = []
    real = _pyav._Run._step

    def step(self):
        calls.append(1)
        return real(self)
    monkeypatch.setattr(_pyav._Run, "_step", step)
    return calls


def test_defaults_keyframes_quality_and_sparse_reads(tmp_path, monkeypatch):
    """Default settings on a Kinetics-like file: a keyframe every 8 frames, PSNR >= 40 dB, and a sparse clip
    decodes a few packets per sampled frame, where the source needs a long run of its 250-frame GOP."""
    from uniformerv2.bench.videos import write_kinetics_like

    src = write_kinetics_like(tmp_path / "k.mp4", gop=250, seconds=6.0)
    r = transcode(src, tmp_path / "p.mp4", psnr_frames=8)
    assert r["frames"] == 180 and (r["width"], r["height"]) == (340, 256)   # short side 256 < 320: kept
    assert r["psnr"] >= 40.0
    with av.open(str(tmp_path / "p.mp4")) as c:
        s = c.streams.video[0]
        pts = [(p.pts, p.is_keyframe) for p in c.demux(s) if p.size]
    keys = [i for i, (_, k) in enumerate(sorted(pts)) if k]
    assert keys == list(range(0, 180, 8))
    calls = count_decoded_packets(monkeypatch)
    wanted = sparse_indices(180, 8, split="val")
    frames = read_frames(tmp_path / "p.mp4", wanted)
    prepared_calls = len(calls)
    assert prepared_calls <= 8 * 8
    calls.clear()
    source = read_frames(src, wanted)
    assert len(calls) > 2 * prepared_calls
    assert np.mean([frame_psnr(a, b) for a, b in zip(source, frames)]) > 38
    g = torch.Generator().manual_seed(0)
    clip, idx, info = read_clip(tmp_path / "p.mp4", lambda n: sparse_indices(n, 8, split="train", generator=g))
    assert clip.shape == (8, 256, 340, 3) and info.num_frames == 180 and info.fps == pytest.approx(30)


def test_settings_are_checked():
    with pytest.raises(UserError, match="even"):
        PrepareSettings(short_side=321)
    with pytest.raises(UserError, match="keyframe_interval"):
        PrepareSettings(keyframe_interval=0)
    assert PrepareSettings(keyframe_interval=1).encoder_options()["bframes"] == "0"   # all-intra


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "data"
    (root / "v").mkdir(parents=True)
    for i in range(3):
        write_video(root / "v" / f"{i}.mp4", 20 + i, width=64, height=48, gop=30)
    write_video(root / "v" / "big.mov", 12, width=128, height=96, gop=12)
    (root / "v" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 3)
    (root / "train.csv").write_text("v/0.mp4,1\nv/1.mp4,0\n# a comment\nv/missing.mp4,2\nv/corrupt.mp4,0\n"
                                    "v/big.mov,2\n")
    (root / "untrimmed.txt").write_text("v/2.mp4 0.73 0.1 0.5 dog\n")
    return root


def test_prepare_a_list_writes_list_and_report_and_resumes(dataset, tmp_path):
    out = tmp_path / "prepared"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (dataset / "v").iterdir()}
    r = prepare_dataset(dataset / "train.csv", out, root=str(dataset), settings=PrepareSettings(short_side=32),
                workers=2, psnr_sample=5)
    assert (r["total"], r["done"], r["skipped"], r["failed"]) == (5, 3, 0, 2)
    reasons = {Path(f["source"]).name: f["reason"] for f in r["files"] if f["status"] == "failed"}
    assert "file not found" in reasons["missing.mp4"] and "cannot open" in reasons["corrupt.mp4"]
    assert (out / "train.csv").read_text() == "v/0.mp4,1\nv/1.mp4,0\nv/big.mp4,2\n"
    assert probe(out / "v" / "big.mp4").width == 42 and probe(out / "v" / "0.mp4").num_frames == 20
    on_disk = json.loads((out / "train.prepare.json").read_text())
    assert on_disk["done"] == 3 and on_disk["bytes_after"] == sum(
        (out / "v" / n).stat().st_size for n in ("0.mp4", "1.mp4", "big.mp4"))
    assert on_disk["bytes_before"] == sum((dataset / "v" / n).stat().st_size for n in ("0.mp4", "1.mp4", "big.mov"))
    assert on_disk["psnr"]["files"] == 3 and on_disk["psnr"]["mean"] > 35 and on_disk["seconds"] > 0
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    # resumed: finished outputs are kept as they are, the failures are tried again
    stamp = (out / "v" / "0.mp4").stat().st_mtime_ns
    again = prepare_dataset(dataset / "train.csv", out, root=str(dataset), settings=PrepareSettings(short_side=32),
                    workers=1)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 3, 2)
    assert (out / "v" / "0.mp4").stat().st_mtime_ns == stamp and again["bytes_after"] == on_disk["bytes_after"]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (dataset / "v").iterdir()} == before
    # an untrimmed list keeps its times and label names (timing is kept)
    u = prepare_dataset(dataset / "untrimmed.txt", out, root=str(dataset), workers=1)
    assert u["done"] == 1 and (out / "untrimmed.txt").read_text() == "v/2.mp4 0.73 0.1 0.5 dog\n"
    with pytest.raises(UserError, match="source folder"):
        prepare_dataset(dataset / "train.csv", dataset, root=str(dataset))


def test_prepare_cli_on_class_folders(tmp_path, capsys):
    for cls in ("jump", "run"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(2):
            write_video(tmp_path / "src" / cls / f"{i}.avi", 10, width=40, height=32, codec="mpeg4", gop=5)
    rc = main(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet",
               "--all-intra"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "4 prepared, 0 already there, 0 failed of 4" in out and "PSNR vs source" in out
    assert (tmp_path / "out" / "videos.csv").read_text().splitlines() == [
        "jump/0.mp4,0", "jump/1.mp4,0", "run/0.mp4,1", "run/1.mp4,1"]
    assert (tmp_path / "out" / "labels.txt").read_text() == "jump\nrun\n"
    with av.open(str(tmp_path / "out" / "run" / "1.mp4")) as c:
        assert all(p.is_keyframe for p in c.demux(video=0) if p.size)
    (tmp_path / "src" / "run" / "bad.mp4").write_bytes(b"junk" * 10)
    assert main(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--workers", "1",
                 "--quiet"]) == 1
    assert "bad.mp4" in capsys.readouterr().out
    assert main(["prepare", str(tmp_path / "src"), "--out", str(tmp_path / "x"), "--all-intra",
                 "--keyframe-interval", "4"]) == 2
    assert sorted(os.listdir(tmp_path / "out" / "run")) == ["0.mp4", "1.mp4"]   # nothing half-written
