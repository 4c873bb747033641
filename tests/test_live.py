"""Live recognition (`uniformerv2 live`, `VideoClassifier.live`) on a real live feed: a barcoded video served as
MPEG-TS over TCP on 127.0.0.1 at real-time pace (``livefeed``). The clips' frames are read back from the pixels
that went to the model (frame i carries its index), so the test sees which source frames each clip held."""
import json
import signal
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest
import torch

import uniformerv2
from livefeed import LiveFeed
from uniformerv2 import VideoClassifier
from uniformerv2.inference.views import clip_indices
from videogen import read_code, write_video

PRESET = "tiny_k400_8x64"     # 8 frames, sparse sampling, 64 px
FPS = 25


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    return uniformerv2.save_pretrained(uniformerv2.create_model(PRESET), tmp_path_factory.mktemp("live") / "tiny")


@pytest.fixture(scope="module")
def clf(model_dir):
    return VideoClassifier.from_pretrained(model_dir, device="cpu", dtype="fp32")


def codes(views: torch.Tensor) -> np.ndarray:
    """(V, T) frame indices read from uint8 views (V, 3, T, S, S)."""
    v = views.permute(0, 2, 3, 4, 1).numpy()
    return np.array([[read_code(frame) for frame in view] for view in v])


class Record:
    """The updates of a run with what the debug hook saw: the frames the clip held (from its pixels), the
    window's last frame, the ring's length, the resident memory."""

    def __init__(self):
        self.rows = []

    def __call__(self, update, clip):
        rss = int(open("/proc/self/statm").read().split()[1]) * 4096
        h, w = clip.last_frame.shape[:2]
        centre = clip.last_frame[:, (w - h) // 2:(w - h) // 2 + h]
        self.rows.append(dict(update=update, held=codes(clip.views), last=read_code(centre),
                              buffered=clip.buffered, rss=rss, rate=clip.rate))


def check_recipe_frames(rows, window: float, clips: int, crops: int):
    """Each clip holds the recipe's test frames (sparse segments, clip k of K) of the N frames of its window,
    which ends at the window's last frame; the frame times say the same in seconds. With 3 crops, the centre
    crop of each clip is read (the side crops hold the white bands)."""
    n = round(window * FPS)
    rel = clip_indices(n, 8, clips)            # (clips, T) within a window of n frames
    for r in rows:
        u, last = r["update"], r["last"]
        want = last - (n - 1) + rel
        assert r["rate"] == pytest.approx(FPS)
        np.testing.assert_array_equal(r["held"][crops // 2::crops], want)
        np.testing.assert_allclose(u.frame_times, u.stream_time + (want - last) / FPS, atol=1e-3)
        assert u.start == pytest.approx(u.stream_time - (n - 1) / FPS)


def test_clips_hold_the_recipes_frames_of_the_newest_window(clf):
    rec = Record()
    with LiveFeed(FPS, size=96, width=128) as feed:         # centre crop of a 4:3 picture
        stream = clf.live(feed.url, window=0.64, views="2x3", duration=3.5, on_clip=rec, threads=1)
        updates = list(stream)
    assert len(updates) >= 6 and stream.stats.updates == len(updates)
    check_recipe_frames(rec.rows, 0.64, clips=2, crops=3)
    every = 0.32                                              # default: window / 2
    for a, b in zip(updates, updates[1:]):
        assert b.stream_time - a.stream_time == pytest.approx(every * (b.skipped + 1), abs=1.01 / FPS)
    lasts = [r["last"] for r in rec.rows]
    assert lasts == sorted(lasts) and len(set(lasts)) == len(lasts)
    assert max(u.lag for u in updates) < 0.5                  # a fast model: nothing waits
    for r in rec.rows[2:]:                                    # past the frames buffered while the stream opened
        newest_sent = max(i for i, t in feed.sent.items() if t <= time.monotonic())
        assert r["last"] <= newest_sent
    assert all(len(u.top_k) == 5 and u.top_k[0].label in clf.labels for u in updates)


def test_a_slow_model_skips_stale_windows_with_bounded_lag_and_flat_memory(clf, monkeypatch):
    forward = clf.engine.forward_views

    def slow(batch):
        time.sleep(0.35)
        return forward(batch)

    monkeypatch.setattr(clf.engine, "forward_views", slow)
    rec = Record()
    with LiveFeed(FPS) as feed:
        stream = clf.live(feed.url, window=0.32, every=0.12, duration=6, on_clip=rec, threads=1)
        updates = list(stream)
    every = 0.12                # at least two windows come due while the model works on one
    assert stream.stats.skipped > 0 and stream.stats.skipped == sum(u.skipped for u in updates)
    steady = updates[2:-1]      # past the frames buffered while the stream opened, before the end of the feed
    assert len(steady) >= 8 and all(u.skipped >= 1 for u in steady), str([u.skipped for u in updates])
    for a, b in zip(updates[1:], updates[2:]):   # the newest window wins: the waiting ones were replaced
        assert b.stream_time - a.stream_time == pytest.approx(every * (b.skipped + 1), abs=1.01 / FPS)
    assert max(u.lag for u in steady) < 0.35 + every + 0.4
    check_recipe_frames(rec.rows, 0.32, clips=1, crops=1)
    assert max(r["buffered"] for r in rec.rows) <= 8 + 3     # the ring: one window (8 frames) and a margin
    grown = rec.rows[-1]["rss"] - rec.rows[2]["rss"]
    assert grown < 16 * 2**20, f"memory grew by {grown / 2**20:.1f} MiB"


def test_reconnects_after_the_server_drops_the_connection(clf):
    rec = Record()
    lines = []
    with LiveFeed(FPS) as feed:
        threading.Timer(1.8, feed.drop, (0.5,)).start()
        stream = clf.live(feed.url, window=0.32, duration=5, on_clip=rec, threads=1, backoff=(0.1, 0.4),
                          log=lines.append)
        updates = list(stream)
        connections = feed.connections
    assert connections == 2 and stream.stats.reconnects == 1
    gaps = [k for k, u in enumerate(updates) if u.gap]
    assert len(gaps) == 1, [u.gap for u in updates]
    k = gaps[0]
    assert 0 < k < len(updates) - 2
    assert 0.5 <= updates[k].gap <= 3.0 and updates[k].gap == pytest.approx(stream.stats.gap)
    assert updates[k].stream_time - updates[k - 1].stream_time >= updates[k].gap
    assert any("connection lost" in s for s in lines) and any("reconnected after" in s for s in lines)
    check_recipe_frames(rec.rows, 0.32, clips=1, crops=1)
    assert rec.rows[k]["last"] > rec.rows[k - 1]["last"] + 0.5 * FPS   # the feed's clock ran on meanwhile


def test_a_file_without_realtime_gets_every_window(clf, tmp_path):
    path = write_video(tmp_path / "v.mp4", 60, width=64, height=64, fps=FPS)
    rec = Record()
    updates = list(clf.live(path, window=0.64, every=0.2, on_clip=rec, threads=1))
    # windows end at frames 15, 20, ..., 55 (every 5 frames once 16 are in)
    assert [r["last"] for r in rec.rows] == list(range(15, 60, 5))
    assert all(u.skipped == 0 for u in updates)
    check_recipe_frames(rec.rows, 0.64, clips=1, crops=1)


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


def test_cli_json_lines_recording_and_ctrl_c_summary(model_dir, tmp_path):
    out = tmp_path / "rec.mp4"
    with LiveFeed(FPS, size=96, width=128) as feed:
        p = subprocess.Popen([sys.executable, "-m", "uniformerv2", "live", feed.url, "--model", str(model_dir),
                              "--json", "--frame-times", "--window", "0.64", "--smooth", "2", "--top-k", "3",
                              "--output-video", str(out), "--duration", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = [p.stdout.readline() for _ in range(4)]
            p.send_signal(signal.SIGINT)
            rest, err = p.communicate(timeout=60)
        finally:
            p.kill()
    assert p.returncode == 0, err
    objs = [json.loads(s) for s in lines + rest.splitlines()]
    assert len(objs) >= 4
    for o in objs:
        assert {"stream_time", "wall_time", "top_k", "lag", "skipped", "frame_times"} <= set(o)
        assert len(o["top_k"]) == 3 and {"label", "index", "prob"} == set(o["top_k"][0])
        assert abs(o["wall_time"] - time.time()) < 120 and 0 <= o["lag"] < 5
        assert o["frame_times"][0][-1] <= o["stream_time"]
    times = [o["stream_time"] for o in objs]
    assert times == sorted(times)
    assert f"{len(objs)} updates" in err and "lag mean" in err and "p95" in err
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert (s.width, s.height) == (128, 96) and len(frames) >= 15
    assert frames[0][:20, :16].mean() > 240 and frames[-1][:20, :16].mean() < 200   # then the labels' dark box


def test_missing_camera_and_unreachable_stream_are_one_line(model_dir):
    import socket

    with socket.socket() as s:      # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for source, says in (("/dev/video99", "no such camera device"), (f"tcp://127.0.0.1:{port}", "cannot open")):
        r = cli("live", source, "--model", model_dir, "--timeout", "3")
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and says in r.stderr and "Traceback" not in r.stderr
        assert r.stdout == ""


def test_bench_live_reports_lag_skips_and_the_rate_kept_up_with(tmp_path, capsys):
    from uniformerv2.cli import main

    out = tmp_path / "r.json"
    assert main(["bench", "live", "--presets", PRESET, "--threads", "1", "--seconds", "3", "--workdir",
                 str(tmp_path), "-o", str(out), "--quiet"]) == 0
    row = json.loads(out.read_text())["result"]["rows"][0]
    assert (row["preset"], row["threads"], row["window"], row["every"]) == (PRESET, 1, 2.0, 1.0)
    assert row["updates"] == 2 and row["skipped"] == 0 and 0 < row["mean_lag"] < 1
    assert row["min_every"] == row["mean_model_s"] and 0 < row["decode_s_per_frame"] < 0.04
    assert row["keeps_up_fps"] == pytest.approx(1 / row["decode_s_per_frame"]) and row["frames"] >= 70
    table = capsys.readouterr().out
    assert f"| {PRESET} | 1 | 2 s / 1 s | 2 | 0 (0%) |" in table


def test_a_variable_rate_feed_is_sampled_by_its_timestamps(clf, tmp_path):
    """Frames at irregular times: each slot of the clip takes the frame nearest to the slot's time on the grid
    of the feed's nominal rate, so the clip keeps its spacing in seconds whatever the frame counts."""
    rng = np.random.default_rng(0)
    stamps = np.cumsum(rng.uniform(0.02, 0.06, 80))           # 17 to 50 frames per second, 25 on average
    stamps = np.round(stamps - stamps[0], 3)                 # the file's clock: milliseconds
    path = write_video(tmp_path / "vfr.mkv", len(stamps), width=64, height=64, fps=FPS, timestamps=list(stamps))
    rec = Record()
    updates = list(clf.live(path, window=0.64, every=0.3, on_clip=rec, threads=1))
    assert len(updates) >= 4
    for r in rec.rows:
        u = r["update"]
        grid = u.stream_time - (round(0.64 * r["rate"]) - 1 - clip_indices(round(0.64 * r["rate"]), 8, 1)) / r["rate"]
        seen = stamps[: r["last"] + 1]
        nearest = seen[np.abs(seen[None, :] - grid.reshape(-1, 1)).argmin(1)]
        np.testing.assert_allclose(u.frame_times.reshape(-1), nearest, atol=2e-3)
        np.testing.assert_array_equal(r["held"][0], np.searchsorted(stamps, nearest - 1e-3))
        assert u.stream_time == pytest.approx(stamps[r["last"]], abs=2e-3)
    by_count = [r["last"] - 15 + clip_indices(16, 8, 1)[0] for r in rec.rows]    # what frame counts would take
    assert any((r["held"][0] != c).any() for r, c in zip(rec.rows, by_count))
