"""`uniformerv2 predict` / `features` as real subprocesses: same numbers as the API, per-input errors and exit
codes, timelines, annotated video, CSV and feature files."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from safetensors.numpy import load_file

from test_inference_predict import official_checkpoint, shared_videos
from uniformerv2 import VideoClassifier
from uniformerv2.cli import main
from uniformerv2.data.decode import probe
from videogen import write_video

PRESET = "tiny_k400_8x64"
MODEL = ("--preset", PRESET, "--device", "cpu")  # CPU fp32, as the API fixture


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return official_checkpoint(PRESET, tmp_path_factory.mktemp("ckpt") / "tiny.pyth", seed=7)


@pytest.fixture(scope="module")
def clf(ckpt):
    return VideoClassifier.from_pretrained(ckpt, preset=PRESET, device="cpu", dtype="fp32")


def test_cli_json_matches_api(ckpt, clf):
    videos = shared_videos()
    r = cli("predict", *videos, "--model", ckpt, *MODEL, "--views", "2x3", "--top-k", "4", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [o["path"] for o in out] == [str(v) for v in videos]
    for o, v in zip(out, videos):
        api = clf.predict(v, views="2x3", top_k=4)
        assert o["ok"] is True and "timeline" not in o
        assert [(s["label"], s["index"]) for s in o["top_k"]] == [(s.label, s.index) for s in api.top_k]
        np.testing.assert_allclose([s["prob"] for s in o["top_k"]], [s.prob for s in api.top_k], atol=1e-5)
        probs = [s["prob"] for s in o["top_k"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
        assert all(s["label"] == clf.labels[s["index"]] for s in o["top_k"])


def test_folder_with_broken_files(ckpt, tmp_path):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    (root / "empty.mp4").write_bytes(b"")
    (root / "sub" / "text.mp4").write_text("this is not a video\n")
    (root / "notes.txt").write_text("ignored: not a video extension\n")
    good = write_video(root / "sub" / "good.mp4", 40, width=80, height=64, fps=20)
    r = cli("predict", root, "--model", ckpt, *MODEL, "--json", "--top-k", "3")
    assert r.returncode == 1, r.stderr
    out = {Path(o["path"]).name: o for o in json.loads(r.stdout)}
    assert set(out) == {"empty.mp4", "text.mp4", "good.mp4"}
    assert [out[n]["ok"] for n in ("empty.mp4", "text.mp4", "good.mp4")] == [False, False, True]
    assert "empty.mp4" in out["empty.mp4"]["error"] and "text.mp4" in out["text.mp4"]["error"]
    assert len(out["good.mp4"]["top_k"]) == 3 and out["good.mp4"]["path"] == str(good)
    assert "2 of 3 inputs failed" in r.stderr



def test_readable_table(ckpt, tmp_path, capsys):
    (tmp_path / "empty.mp4").write_bytes(b"")
    write_video(tmp_path / "good.mp4", 30, width=64, height=64, fps=10)
    assert main(["predict", str(tmp_path), "--model", str(ckpt), *MODEL, "--quiet", "--window", "1.5",
                 "--top-k", "2"]) == 1
    out = capsys.readouterr().out
    assert out.count("ERROR") == 1 and out.count(" 1. ") == 1 and out.count(" 2. ") == 1
    assert "0.00-    1.50s" in out and "1.50-    3.00s" in out


def test_timeline_and_annotated_video(ckpt, tmp_path):
    video = shared_videos()[-1]
    info = probe(video, exact=True)
    out_video = tmp_path / "annotated.mp4"
    r = cli("predict", video, "--model", ckpt, *MODEL, "--window", "2", "--stride", "1",
            "--top-k", "2", "--json", "--output-video", out_video)
    assert r.returncode == 0, r.stderr
    [o] = json.loads(r.stdout)
    tl = o["timeline"]
    assert tl[0]["start"] == 0 and abs(tl[-1]["end"] - info.num_frames / info.fps) < 1e-3
    assert all(a["start"] < b["start"] <= a["end"] for a, b in zip(tl, tl[1:]))
    assert all(len(w["top_k"]) == 2 for w in tl)
    got = probe(out_video, exact=True)
    assert (got.num_frames, got.width, got.height) == (info.num_frames, info.width, info.height)
    assert abs(got.fps - info.fps) < 0.01
    with av.open(str(out_video)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == info.num_frames
    # the caption box is drawn in the top-left corner: dark background with bright text
    corner = frames[0][:20, :60].astype(int)
    assert corner.max() > 200 and np.median(corner) < 100


def test_csv_output(ckpt, tmp_path):
    video = write_video(tmp_path / "v.mp4", 30, width=64, height=64, fps=10)
    out = tmp_path / "out.csv"
    assert main(["predict", str(video), str(tmp_path / "missing.mp4"), "--model", str(ckpt), *MODEL,
                 "--csv", str(out), "--window", "1.5", "--top-k", "2"]) == 1
    rows = list(csv.DictReader(out.open()))
    ok = [x for x in rows if x["ok"] == "1"]
    assert len(ok) == 2 + 2 * 2  # video-level top-2, then two 1.5 s windows of a 3 s video
    assert [x["start"] for x in ok] == ["", "", "0.0", "0.0", "1.5", "1.5"]
    assert [x for x in rows if x["ok"] == "0"][0]["path"].endswith("missing.mp4")


def test_features_cli(ckpt, clf, tmp_path):
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    write_video(src / "a" / "one.mp4", 30, width=64, height=48, fps=10)
    write_video(src / "two.mp4", 20, width=64, height=48, fps=10)
    out = tmp_path / "feats"
    r = cli("features", src, "--model", ckpt, *MODEL, "--out", out, "--views", "1x3")
    assert r.returncode == 0, r.stderr
    one = load_file(str(out / "a" / "one.safetensors"))
    assert one["features"].shape == (64,) and one["view_features"].shape == (3, 64)
    ref = clf.extract_features(src / "a" / "one.mp4", views="1x3")
    np.testing.assert_allclose(one["features"], ref.features, atol=1e-5)
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2
    # the folder holds that run: another one there needs --overwrite (or --resume for the same settings)
    again = ["features", str(src / "a" / "one.mp4"), "--model", str(ckpt), *MODEL, "--out", str(out),
             "--format", "npy", "--window", "1"]
    assert main(again) == 2
    assert main(again + ["--overwrite"]) == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 1
    assert np.load(out / "one.npy").shape == (3, 64)
    np.testing.assert_allclose(np.load(out / "one.windows.npy"), [[0, 1], [1, 2], [2, 3]])


def test_bad_usage_exits_2(ckpt, tmp_path, capsys):
    video = write_video(tmp_path / "v.mp4", 10, fps=10)
    base = [str(video), "--model", str(ckpt), *MODEL]
    assert main(["predict", *base, "--stride", "1"]) == 2
    assert main(["predict", *base, "--views", "4x2"]) == 2
    other = write_video(tmp_path / "w.mp4", 10, fps=10)
    assert main(["predict", str(other), *base, "--output-video", str(tmp_path / "o.mp4")]) == 2
    assert main(["predict", str(video), "--model", str(ckpt)]) == 2                      # .pyth without preset
    assert main(["predict", str(tmp_path / "nothing-here"), "--model", str(ckpt), *MODEL]) == 1
    assert main(["features", str(tmp_path), "--model", str(ckpt), *MODEL, "--out", str(video)]) == 2
    err = capsys.readouterr().err
    assert "--stride needs --window" in err and "CLIPSxCROPS" in err and "exactly one input" in err
