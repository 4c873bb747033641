"""`explain`: the query attention and class map of a model trained here, in seconds, on the synthetic benchmark's
"moving left" / "moving right" (the only moving object is the target, whose mask the renderer gives): the maps'
peaks fall on the target in the frames of the input (through a resize and a crop), deleting the most-attended
patch tubes lowers the true class's probability more than deleting random ones, the CLI writes its four outputs,
and the model is left as it was."""
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import uniformerv2 as u
from uniformerv2.synth import render_clip, target_masks, write_mp4

NAMES = ["moving left", "moving right"]
SIZE, FRAMES = 48, 16


def _batch(seeds):
    idx = np.linspace(0, FRAMES - 1, 8).round().astype(int)
    clips, labels = [], []
    for s in seeds:
        for label, name in enumerate(NAMES):
            clip = torch.from_numpy(render_clip(name, s, frames=FRAMES, size=SIZE)[idx].copy())
            clips.append((clip.permute(3, 0, 1, 2).float() / 255 - 0.45) / 0.225)
            labels.append(label)
    return torch.stack(clips), torch.tensor(labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-layer, 32-wide model (temporal downsampling: a token step spans two frames; 6x6 patch grid), trained
    from scratch on 64 clips: about 400 steps, 100 % on held-out clips in our runs."""
    torch.manual_seed(0)
    model = u.create_model("uniformerv2_nano", num_classes=2, num_frames=8, img_size=SIZE, temporal_downsample=True,
                           global_layers=[0, 1], head_dropout=0.0, global_mlp_dropout=0.0, labels=NAMES)
    video, labels = _batch(range(32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # small steps: one thread wastes no time in synchronisation
    try:
        for _ in range(400):
            b = torch.randint(0, len(video), (16,), generator=gen)
            loss = F.cross_entropy(model(video[b]), labels[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    root = tmp_path_factory.mktemp("explain")
    model.save_pretrained(root / "model")
    clf = u.VideoClassifier(u.load_model(root / "model"), device="cpu")
    return SimpleNamespace(clf=clf, dir=root / "model", root=root)


def _embed(frames: np.ndarray) -> np.ndarray:
    """(T, 48, 48, ...) -> (T, 96, 144, ...): twice the size, in the middle of grey bands. The model's pipeline
    resizes the short side back to 48 (72 wide) and crops the centre: exactly the rendered clip."""
    big = frames.repeat(2, axis=1).repeat(2, axis=2)
    out = np.full((big.shape[0], 96, 144, *big.shape[3:]), 128 if big.dtype == np.uint8 else 0, big.dtype)
    out[:, :, 24:120] = big
    return out


def _held_out(k):
    name = NAMES[k % 2]
    seed = 1000 + k
    return k % 2, render_clip(name, seed, frames=FRAMES, size=SIZE), target_masks(name, seed, frames=FRAMES, size=SIZE)


def test_map_peak_falls_on_the_only_moving_object(trained):
    hits, chance, clip_peaks, right = [], [], [], 0
    for k in range(8):
        label, clip, mask = _held_out(k)
        expl = trained.clf.explain(_embed(clip), target=label)
        w = expl.windows[0]
        assert w.stride == 2 and w.size == (96, 144) and w.resized == (48, 72)
        right += int(expl.probs[label] > 0.5)
        box = _embed(mask) > 0.5
        near = torch.from_numpy(box.astype(np.float32))[:, None]
        near = F.max_pool2d(near, 17, stride=1, padding=8)[:, 0].numpy() > 0  # within half a patch (8 px here)
        for f in np.unique(w.frames):
            m = w.pixel_map(int(f), "attention")
            assert m.shape == (96, 144) and not m[:, :22].any() and not m[:, 122:].any()  # no crop in the bands
            y, x = np.unravel_index(m.argmax(), m.shape)
            hits.append(near[f, y, x])
            chance.append(near[f, :, 24:120].mean())
        # the class map's peak over the whole clip: on the target, in that frame
        best = max((float(w.pixel_map(int(f), "class").max()), int(f)) for f in np.unique(w.frames))[1]
        m = w.pixel_map(best, "class")
        y, x = np.unravel_index(m.argmax(), m.shape)
        clip_peaks.append(near[best, y, x])
    assert right >= 6
    assert np.mean(hits) >= 0.6 and np.mean(hits) >= 3 * np.mean(chance), (np.mean(hits), np.mean(chance))
    assert sum(clip_peaks) >= 5, clip_peaks


def test_deleting_most_attended_tubes_lowers_the_true_class_more_than_random_ones(trained):
    from uniformerv2.bench.explain import deletion, explain_window, views_of

    drops = []
    for k in range(8):
        label, clip, _ = _held_out(k)
        path = trained.root / f"held_out_{k}.mp4"
        write_mp4(path, clip)
        views, frames, spec = views_of(trained.clf, str(path))
        window = explain_window(trained.clf, views, frames, spec.crops, label)
        r = deletion(trained.clf, views, window, label, fractions=(0.2,), draws=3, rng=np.random.default_rng(k))
        drops.append({key: r["none"] - p for key, p in r.items()})
    mean = {key: float(np.mean([d[key] for d in drops])) for key in drops[0]}
    for order in ("attention", "class"):
        assert mean[f"{order}@0.2"] > max(3 * mean["random@0.2"], mean["random@0.2"] + 0.03), mean
    assert mean["least@0.2"] < mean["attention@0.2"], mean


def test_explain_leaves_the_model_as_it_was_and_agrees_with_predict(trained):
    clf = trained.clf
    classes = [type(m) for m in clf.model.modules()]
    label, clip, _ = _held_out(3)
    expl = clf.explain(clip, views="2x3")
    assert [type(m) for m in clf.model.modules()] == classes   # the speed variants are back
    assert all(p.requires_grad for p in clf.model.parameters())
    pred = clf.predict(clip, views="2x3")
    np.testing.assert_allclose(expl.probs, pred.probs, atol=1e-5)
    w = expl.windows[0]
    assert w.attention.shape == (6, 2, 2, 4, 37) and w.gradient.shape == w.attention.shape
    np.testing.assert_allclose(w.attention.sum(axis=(3, 4)), 1.0, atol=1e-5)   # softmax over the T'·L tokens
    for key in ("attention", "class_specific"):
        assert sum(p[key] for p in expl.profile()) == pytest.approx(1, abs=1e-4)
    assert expl.target == int(np.argmax(pred.probs))
    other = clf.explain(clip, target=NAMES[1 - expl.target], views="2x3")
    assert other.target == 1 - expl.target and not np.allclose(other.windows[0].class_maps, w.class_maps)
    np.testing.assert_allclose(other.windows[0].attention, w.attention, atol=1e-6)   # attention: whatever the class
    with pytest.raises(u.UserError, match="unknown target class"):
        clf.explain(clip, target="flying")


def test_synth_masks_follow_the_target_of_a_generated_video(tmp_path):
    from uniformerv2.synth import generate, video_target_masks

    generate(tmp_path, classes=NAMES, videos_per_class=1, splits=(1, 0, 0), frames=8, size=32, workers=1,
             progress=False)
    xs = {}
    for name in NAMES:
        rel = f"videos/{name.replace(' ', '_')}/0000.mp4"
        m = video_target_masks(rel, NAMES, frames=8, size=32)
        assert m.shape == (8, 32, 32) and (m.sum(axis=(1, 2)) > 10).all()
        xs[name] = (m * np.arange(32)).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
    assert (np.diff(xs["moving right"]) > 0).all() and np.allclose(xs["moving left"], xs["moving right"][::-1])
    with pytest.raises(u.UserError, match="not a video of this synthetic dataset"):
        video_target_masks("videos/flying/0000.mp4", NAMES)


def test_explain_cli_writes_the_video_sheet_json_and_arrays(trained, tmp_path):
    import av
    from PIL import Image
    from safetensors.numpy import load_file

    from uniformerv2.cli import main

    video = tmp_path / "long.mp4"
    write_mp4(video, render_clip("moving right", 7, frames=24, size=SIZE), fps=8)   # 3 s: three 1 s windows
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "uniformerv2", "explain", str(video), "--model", str(trained.dir),
                        "--output", str(out), "--window", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "window 3/3" in r.stderr and "moving" in r.stdout
    doc = json.loads((out / "explanation.json").read_text())
    assert doc["class"]["label"] in NAMES and set(doc["probabilities"]) == set(NAMES)
    assert len(doc["windows"]) == 3 and doc["frame_stride"] == 2
    frames = [p["frame"] for p in doc["windows"][0]["profile"]]
    assert frames == sorted(set(frames)) and len(frames) >= 6   # the sampled frames of the first 1 s window
    assert sum(p["class_specific"] for p in doc["profile"]) == pytest.approx(1, abs=1e-4)
    arrays = load_file(str(out / "explanation.safetensors"))
    assert arrays["w2.attention"].shape == (1, 2, 2, 4, 37) and arrays["w0.class_map"].shape == (1, 4, 6, 6)
    with av.open(str(out / "explanation.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 24 and frames[0].shape == (SIZE, SIZE, 3)
    sheet = Image.open(out / "explanation.png")
    assert sheet.format == "PNG" and sheet.width > 8 * 128
    # bad input: one line, exit 2, nothing written
    assert main(["explain", str(video), "--model", str(trained.dir), "-o", str(tmp_path / "x"),
                 "--target", "flying"]) == 2
    assert not (tmp_path / "x").exists()
