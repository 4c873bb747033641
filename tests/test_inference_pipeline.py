"""predict_many / extract_features_many: input order with several workers, the same bits whatever the workers and
the neighbours, a corrupt file reported once, windows streamed group by group, an hour-long video's timeline in
bounded memory (peak RSS measured in a subprocess), the input stage's uint8 views equal to the float views."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from uniformerv2 import VideoClassifier
from uniformerv2.inference import Failure
from uniformerv2.data.decode import read_frames
from uniformerv2.inference.pipeline import Batcher, Chunk, RunStats, model_threads, usable_cores, video_chunks
from uniformerv2.inference.views import ViewMaker, normalize_views
from videogen import write_video
from weightfiles import saved_noisy_model

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_noisy_model(tmp_path_factory.mktemp("model") / "tiny", seed=11)


@pytest.fixture(scope="module")
def clf(model_dir):
    return VideoClassifier.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A long video first (its worker is busy while the others finish), short ones, a corrupt one."""
    d = tmp_path_factory.mktemp("videos")
    out = [write_video(d / "long.mp4", 150, width=80, height=60, fps=15)]
    out += [write_video(d / f"v{i}.mp4", 20 + 9 * i, width=64 + 16 * (i % 2), height=48, fps=10) for i in range(4)]
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 8)
    out.insert(2, d / "corrupt.mp4")
    return [str(v) for v in out]


def test_uint8_views_equal_float_views(clf, videos):
    """What the workers ship (uint8 crops), normalised on the model's side, is the float test transform's output."""
    frames = read_frames(videos[0], range(0, 80, 10), short_side=clf.data.test_short_side)
    for crops in (1, 3):
        float_views = ViewMaker(clf.data, crops)(frames)
        uint8_views = ViewMaker(clf.data, crops, output="uint8")(frames)
        assert uint8_views.dtype == torch.uint8
        assert torch.equal(normalize_views(uint8_views, clf.data.mean, clf.data.std), float_views)


def test_model_threads_leave_the_workers_their_cores(clf, videos):
    saved = torch.get_num_threads()
    cores = usable_cores()
    with model_threads(0) as n:
        assert n == saved                                         # decoding in this process: unchanged
    with model_threads(1) as n:
        assert n == max(1, min(saved, cores - 1))
    with model_threads(cores + 5) as n:
        assert n == 1
    assert torch.get_num_threads() == saved
    # predict_many runs its model on the cores its workers leave, and gives the threads back when it ends
    seen = [torch.get_num_threads() for _ in clf.predict_many(videos[:3], views="1x1", workers=2, batch_size=2)]
    assert seen == [max(1, min(saved, cores - 2))] * 3
    assert torch.get_num_threads() == saved


@pytest.fixture
def one_thread():
    """The same model threads with and without workers (``model_threads`` caps them while workers run; bits
    are only comparable at one thread count)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_results_in_input_order_and_same_bits_with_workers(clf, videos, one_thread):
    runs = {}
    for workers in (0, 2):
        stream = clf.predict_many(videos, views="2x3", top_k=3, workers=workers, batch_size=8)
        runs[workers] = list(stream)
        assert [r.path for r in runs[workers]] == videos                  # input order
        assert [r.ok for r in runs[workers]] == [True, True, False, True, True, True]
        s = stream.stats
        assert (s.videos, s.failed, s.clips, s.workers) == (5, 1, 5 * 6, workers)
        assert 0 <= s.wait_fraction <= 1 and s.seconds > 0
        assert "6 videos (1 failed)" in s.line() and "clips/s" in s.line()
    bad = runs[2][2]
    assert isinstance(bad, Failure) and bad.error.startswith(videos[2] + ": ")
    for a, b in zip(runs[0], runs[2]):
        if a.ok:
            assert np.array_equal(a.view_probs, b.view_probs) and a.top_k == b.top_k
            assert a.views == b.views and a.num_frames == b.num_frames
    # a video's numbers do not depend on the videos that share its forward passes
    alone = clf.predict_many([videos[3]], views="2x3", workers=0, batch_size=8)
    assert np.array_equal(next(alone).view_probs, runs[2][3].view_probs)
    # and equal the one-video API up to float rounding (other batch shapes)
    single = clf.predict(videos[3], views="2x3", top_k=3)
    np.testing.assert_allclose(runs[2][3].view_probs, single.view_probs, atol=1e-5)
    assert [s.index for s in single.top_k] == [s.index for s in runs[2][3].top_k]


def test_features_many_equal_features(clf, videos):
    got = list(clf.extract_features_many(videos, views="1x3", workers=2))
    assert [g.path for g in got] == videos and isinstance(got[2], Failure)
    for g, path in zip(got, videos):
        if not isinstance(g, Failure):
            ref = clf.extract_features(path, views="1x3")
            assert g.features.shape == (64,) and g.view_features.shape == (3, 64)
            np.testing.assert_allclose(g.view_features, ref.view_features, atol=1e-5)


def test_windows_stream_group_by_group(clf, videos):
    """batch_size 3 with 1x3 views: one window per chunk; the result equals the one-video timeline."""
    spec = clf.view_spec("1x3", 2.0, 2.0, 3)
    chunks = list(video_chunks(0, videos[0], spec))                        # 10 s at 15 fps: 5 windows
    assert [c.part for c in chunks] == list(range(5)) and [c.last for c in chunks] == [False] * 4 + [True]
    assert all(c.views.shape == (3, 3, 8, 64, 64) and c.views.dtype == torch.uint8 for c in chunks)
    many = next(clf.predict_many([videos[0]], views="1x3", window=2.0, workers=1, batch_size=3))
    one = clf.predict(videos[0], views="1x3", window=2.0)
    assert [(w.start, w.end) for w in many.timeline] == [(w.start, w.end) for w in one.timeline]
    np.testing.assert_allclose(many.view_probs, one.view_probs, atol=1e-5)
    assert [v["frames"] for v in many.views] == [v["frames"] for v in one.views]
    feats = next(clf.extract_features_many([videos[0]], views="1x3", window=2.0, batch_size=4, workers=0))
    ref = clf.extract_features(videos[0], views="1x3", window=2.0)
    assert feats.view_features.shape == (5, 3, 64)
    np.testing.assert_allclose(feats.windows, ref.windows)
    np.testing.assert_allclose(feats.view_features, ref.view_features, atol=1e-5)


def test_batcher_fixed_passes_and_padding():
    """Chunks of 2, 5 and 1 views through passes of 4: three passes of exactly 4 rows, outputs back per chunk."""
    seen = []

    def forward(batch):
        seen.append(batch.clone())
        x = batch.float().flatten(1)[:, :1]
        return x.numpy().copy(), (x * 10).numpy().copy()

    b = Batcher(forward, 4)
    sizes, done, ready = (2, 5, 1), [], []
    for i, n in enumerate(sizes):
        views = torch.arange(n, dtype=torch.uint8).view(-1, 1, 1, 1, 1).expand(n, 3, 1, 2, 2) + 10 * (i + 1)
        out = b.add(Chunk(i, f"v{i}", views=views.contiguous()))
        ready.append([c.index for c, _ in out])
        done += out
    assert ready == [[], [0], [1, 2]] and b.flush() == [] and b.views_run == 8
    assert [tuple(s.shape) for s in seen] == [(4, 3, 1, 2, 2)] * 2      # 8 views: no padding needed
    for (c, (f, p)), n, i in zip(done, sizes, range(3)):
        assert f[:, 0].tolist() == [10 * (i + 1) + k for k in range(n)] and p.shape == (n, 1)
    b.add(Chunk(3, "v3", views=torch.ones((1, 3, 1, 2, 2), dtype=torch.uint8)))
    b.flush()
    assert seen[-1].shape[0] == 4 and seen[-1][1:].eq(0).all()          # padded with zeros


def test_stats_combine():
    s = RunStats.combine([{"videos": 4, "failed": 1, "clips": 12, "seconds": 10.0, "waited": 2.0, "workers": 3},
                          {"videos": 5, "failed": 0, "clips": 15, "seconds": 5.0, "waited": 1.0, "workers": 3}])
    assert (s.videos, s.failed, s.clips, s.seconds, s.processes) == (9, 1, 27, 10.0, 2)
    assert s.videos_per_s == 1.0 and s.clips_per_s == 2.7 and s.wait_fraction == pytest.approx(0.2)


RSS_SCRIPT = """
import json, resource, sys
sys.path.insert(0, {here!r})
from videogen import write_video
from uniformerv2 import VideoClassifier
path, minutes, model = sys.argv[1], float(sys.argv[2]), sys.argv[3]
write_video(path, int(2 * 60 * minutes), width=32, height=24, fps=2, gop=20)
clf = VideoClassifier.from_pretrained(model, device="cpu")
[pred] = list(clf.predict_many([path], views="1x1", window=20, workers=1, batch_size=8))
usage = resource.getrusage
print(json.dumps({{"windows": len(pred.timeline), "frames": pred.num_frames,
                  "model_mb": usage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_mb": usage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


@pytest.mark.slow
def test_hour_long_timeline_in_bounded_memory(model_dir, tmp_path):
    """Peak RSS of the model process and of the decoding worker for a 5-minute and a 60-minute video (2 fps,
    20 s windows): the hour adds almost nothing, while its frames at the model's size would take 117 MB."""
    script = tmp_path / "rss.py"
    script.write_text(RSS_SCRIPT.format(here=str(HERE)))
    peaks = {}
    for minutes in (5, 60):
        r = subprocess.run([sys.executable, str(script), str(tmp_path / f"v{minutes}.mp4"), str(minutes),
                            str(model_dir)], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr
        peaks[minutes] = json.loads(r.stdout.splitlines()[-1])
    assert peaks[60]["windows"] == 180 and peaks[60]["frames"] == 7200
    whole_video_mb = 7200 * 64 * 85 * 3 / 2**20                           # decoded at the model's short side
    for key in ("model_mb", "worker_mb"):
        grew = peaks[60][key] - peaks[5][key]
        print(f"{key}: {peaks[5][key]:.1f} -> {peaks[60][key]:.1f} MB")
        assert grew < 12, f"{key}: {peaks[5][key]:.0f} -> {peaks[60][key]:.0f} MB (whole video: {whole_video_mb:.0f} MB)"
