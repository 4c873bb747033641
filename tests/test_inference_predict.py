"""VideoClassifier (Python API): probabilities, view aggregation, pipeline parity, batching, timelines,
features, loading. Models are tiny presets loaded from synthetic official-format (.pyth) checkpoints."""
from pathlib import Path

import numpy as np
import pytest
import torch

import uniformerv2
from uniformerv2 import UserError, VideoClassifier, VideoError
from uniformerv2.accel import optimize
from uniformerv2.data.decode import probe, read_frames
from uniformerv2.data.sampling import sparse_indices
from uniformerv2.data.transforms import build_transform
from uniformerv2.labels import load_labels
from videogen import write_video

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


def official_checkpoint(preset: str, path: Path, seed: int = 0) -> Path:
    """A .pyth in the official layout: a preset model with every tensor randomly perturbed."""
    model = uniformerv2.create_model(preset)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=g) * (0.5 if name.startswith("head") else 0.05))
                if "running_var" in name:
                    t.abs_().add_(0.5)
    torch.save(uniformerv2.export_official_state_dict(model), path)
    return path


def shared_videos():
    if not VIDEOS.is_dir() or not any(VIDEOS.iterdir()):
        pytest.skip(f"shared test videos not found at {VIDEOS} (present in CI; absent in a user's clone)")
    return sorted(VIDEOS.iterdir())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return official_checkpoint("tiny_k400_8x64", tmp_path_factory.mktemp("ckpt") / "tiny.pyth")


@pytest.fixture(scope="module")
def clf(ckpt):
    return VideoClassifier.from_pretrained(ckpt, preset="tiny_k400_8x64", device="cpu")


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("vid") / "small.mp4", 45, width=96, height=64, fps=15)


def check_scores(pred, labels, k):
    probs = [s.prob for s in pred.top_k]
    assert len(pred.top_k) == k
    assert all(0 < p <= 1 for p in probs)
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) <= 1 + 1e-6
    for s in pred.top_k:
        assert s.label == labels[s.index]
    assert pred.probs.shape == (len(labels),)
    assert abs(float(pred.probs.sum()) - 1) < 1e-4
    assert [s.index for s in pred.top_k] == list(np.argsort(-pred.probs, kind="stable")[:k])


def test_checkpoint_loads_exactly(ckpt, clf):
    g = torch.Generator().manual_seed(1)
    source = uniformerv2.create_model("tiny_k400_8x64", checkpoint=ckpt).eval()
    optimize(source, for_inference=True)  # the classifier runs the inference variants: compare like with like
    x = torch.randn(2, 3, 8, 64, 64, generator=g)
    with torch.no_grad():
        assert torch.equal(clf.model(x), source(x))


def test_default_device_and_dtype(ckpt, clf, small_video):
    """CUDA + bf16 when available, else CPU + fp32; either way close to CPU fp32."""
    auto = VideoClassifier.from_pretrained(ckpt, preset="tiny_k400_8x64")
    cuda = torch.cuda.is_available()
    assert auto.device.type == ("cuda" if cuda else "cpu")
    assert auto.dtype == (torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32)
    assert next(auto.model.parameters()).dtype == auto.dtype
    a, b = auto.predict(small_video, views="2x3"), clf.predict(small_video, views="2x3")
    assert a.probs.dtype == np.float32
    np.testing.assert_allclose(a.probs, b.probs, atol=2e-2 if cuda else 1e-6)


def test_predict_shared_videos(clf):
    labels = load_labels("kinetics400_uniformerv2_order")
    assert clf.labels == labels
    for path in shared_videos():
        pred = clf.predict(path, top_k=5, views="2x3")
        check_scores(pred, labels, 5)
        assert pred.num_frames == probe(path, exact=True).num_frames
        assert pred.view_probs.shape == (6, 400)
        np.testing.assert_allclose(pred.view_probs.sum(1), 1, atol=1e-5)
        # summed softmax over views (normalised by the number of views)
        np.testing.assert_allclose(pred.probs, pred.view_probs.mean(0), rtol=1e-6)
        assert [(v["clip"], v["crop"]) for v in pred.views] == [(k, j) for k in range(2) for j in range(3)]
        for v in pred.views:
            assert v["frames"] == sparse_indices(pred.num_frames, 8, clip=v["clip"], num_clips=2).tolist()


def test_pipeline_matches_manual_computation(clf, small_video):
    """Decode the sparse clips, 3-crop, normalise and average softmaxes by hand: same numbers."""
    pred = clf.predict(small_video, views="2x3", top_k=3)
    transform = build_transform("test", crop_size=64, short_side=64, mean=[0.45] * 3, std=[0.225] * 3, num_crops=3)
    views = []
    for k in range(2):
        frames = read_frames(small_video, sparse_indices(45, 8, clip=k, num_clips=2))
        views.append(transform(torch.from_numpy(frames)))          # (3 crops, 3, T, S, S)
    with torch.no_grad():
        probs = torch.softmax(clf.model(torch.cat(views)), -1).numpy()
    np.testing.assert_allclose(pred.view_probs, probs, atol=1e-6)
    np.testing.assert_allclose(pred.probs, probs.sum(0) / 6, atol=1e-6)


def test_frame_array_equals_file(clf, small_video):
    frames = read_frames(small_video, range(45))
    a, b = clf.predict(small_video, views="2x3"), clf.predict(frames, views="2x3")
    assert b.path is None and b.num_frames == 45
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    with pytest.raises(UserError, match="uint8"):
        clf.predict(frames.astype(np.float32))


def test_list_is_batched_and_errors_are_per_input(clf, small_video, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    single = clf.predict(small_video, views="2x1")
    out = clf.predict([small_video, bad, small_video], views="2x1", on_error="return")
    assert [r.ok for r in out] == [True, False, True]
    assert "bad.mp4" in out[1].error and out[1].to_dict() == {"path": str(bad), "ok": False, "error": out[1].error}
    for r in (out[0], out[2]):
        np.testing.assert_allclose(r.probs, single.probs, atol=1e-5)  # other batch size: fp32 rounding only
    with pytest.raises(VideoError):
        clf.predict([small_video, bad])


def test_memory_cap_chunks_views(ckpt, small_video):
    clf = VideoClassifier.from_pretrained(ckpt, preset="tiny_k400_8x64", device="cpu")
    ref = clf.predict(small_video, views="3x3")
    clf.engine.memory_cap = 1  # one view per forward pass
    assert clf.engine.memory_views() == 1 and clf.view_spec("3x3").group_views == 1
    np.testing.assert_allclose(clf.predict(small_video, views="3x3").view_probs, ref.view_probs, atol=1e-5)


def test_default_views_come_from_the_model(ckpt, small_video):
    model = uniformerv2.create_model("tiny_k400_8x64", checkpoint=ckpt)
    model.data_config = model.data_config.replace(test_clips=4, test_crops=3)   # as the Kinetics presets
    pred = VideoClassifier(model, device="cpu").predict(small_video)
    assert len(pred.views) == 12 and pred.view_probs.shape == (12, 400)
    with pytest.raises(UserError, match="CLIPSxCROPS"):
        VideoClassifier(model, device="cpu").predict(small_video, views="4x2")


def test_bgr_models_see_reversed_channels(tmp_path, small_video):
    ssv2 = VideoClassifier.from_pretrained(official_checkpoint("tiny_ssv2_8x64", tmp_path / "s.pyth", 3),
                                           preset="tiny_ssv2_8x64", device="cpu")
    assert uniformerv2.get_preset("ssv2_b16_16x224").data_config().bgr and len(ssv2.labels) == 174
    ssv2.data = ssv2.data.replace(bgr=True)       # as the official Something-Something presets
    frames = read_frames(small_video, range(45))
    bgr = ssv2.predict(frames, views="1x3")
    rgb_model = VideoClassifier(ssv2.model, device="cpu")
    rgb_model.data = ssv2.data.replace(bgr=False)
    np.testing.assert_allclose(bgr.probs, rgb_model.predict(frames[..., ::-1].copy(), views="1x3").probs, atol=1e-6)
    assert not np.allclose(bgr.probs, rgb_model.predict(frames, views="1x3").probs, atol=1e-6)


def test_timeline_covers_the_video(clf):
    path = shared_videos()[0]
    info = probe(path, exact=True)
    pred = clf.predict(path, window=2.0, stride=1.5, top_k=3, views="1x1")
    tl = pred.timeline
    duration = info.num_frames / info.fps
    assert tl[0].start == 0 and abs(tl[-1].end - duration) < 1e-6
    assert len(tl) >= int(duration / 1.5)
    for a, b in zip(tl, tl[1:]):
        assert a.start < b.start <= a.end                      # no gaps
    for w in tl:
        assert abs((w.end - w.start) - 2.0) < 1e-6
        check_scores(type("P", (), {"top_k": w.top_k, "probs": w.probs})(), clf.labels, 3)
    for v in pred.views:                                        # every view samples inside its window
        w = tl[v["window"]]
        assert all(round(w.start * info.fps) <= f < round(w.end * info.fps) for f in v["frames"])
    np.testing.assert_allclose(pred.probs, np.mean([w.probs for w in tl], 0), atol=1e-6)
    d = pred.to_dict()
    assert d["ok"] and len(d["timeline"]) == len(tl) and set(d["timeline"][0]) == {"start", "end", "top_k"}


def test_timeline_of_short_video_and_arrays(clf):
    frames = np.random.default_rng(0).integers(0, 255, (20, 48, 64, 3), dtype=np.uint8)
    pred = clf.predict(frames, window=5, fps=10)
    assert [(w.start, w.end) for w in pred.timeline] == [(0.0, 2.0)]
    with pytest.raises(UserError, match="frame rate"):
        clf.predict(frames, window=1)
    with pytest.raises(UserError, match="stride"):
        clf.predict(frames, stride=1)


def test_features(clf, small_video):
    feats = clf.extract_features(small_video, views="2x3")
    pred = clf.predict(small_video, views="2x3")
    assert feats.features.shape == (64,) and feats.view_features.shape == (6, 64)
    np.testing.assert_allclose(feats.features, feats.view_features.mean(0), rtol=1e-6)
    with torch.no_grad():   # the head on these features gives the predicted view probabilities
        logits = clf.model.head(torch.from_numpy(feats.view_features))
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), pred.view_probs, atol=1e-6)
    win = clf.extract_features(small_video, views="1x3", window=1.0, stride=0.6)   # 15 fps: 15 and 9 frames
    assert win.features.shape == (5, 64) and win.view_features.shape == (5, 3, 64)
    np.testing.assert_allclose(win.windows, [[0, 1], [0.6, 1.6], [1.2, 2.2], [1.8, 2.8], [2, 3]], atol=1e-6)


def test_from_pretrained_sources(ckpt, tmp_path, small_video, clf):
    with pytest.raises(UserError, match="preset"):
        VideoClassifier.from_pretrained(ckpt)
    with pytest.raises(UserError, match="no such"):
        VideoClassifier.from_pretrained(tmp_path / "missing")
    d = clf.model.save_pretrained(tmp_path / "model")
    with pytest.raises(UserError, match="model directory"):
        VideoClassifier.from_pretrained(d, preset="tiny_k400_8x64")
    again = VideoClassifier.from_pretrained(d, device="cpu", dtype="fp32")
    np.testing.assert_allclose(again.predict(small_video).probs, clf.predict(small_video).probs, atol=1e-6)
    half = VideoClassifier.from_pretrained(d, device="cpu", dtype="bf16")
    assert half.dtype == torch.bfloat16
    assert half.predict(small_video).probs.dtype == np.float32
