"""Models taken by name everywhere: ``load_model`` / ``from_pretrained`` / ``VideoClassifier.from_pretrained``
/ ``create_model(pretrained="clip")`` / training configs / the CLI, and local MMAction2 files through the one
loader (``load_model``, ``convert --to mmaction2``, ``info``).

Downloads come from a real HTTP server on 127.0.0.1 (the ``served`` / ``env`` fixtures of
test_weights_download.py: a test registry whose ``https://HOST/PATH`` URLs reach the server through
``UNIFORMERV2_MIRROR``); no test touches the network.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import uniformerv2 as u
from uniformerv2 import VideoClassifier
from uniformerv2.cli import main as cli
from uniformerv2.labels import load_labels
from uniformerv2.weights import download as dl
from uniformerv2.weights.mmaction2 import read_mmaction2
from uniformerv2.weights.registry import get_entry

import official_reference as ref
from test_model import perturb_
from test_weights_download import BROKEN, CLIP, MMA, OFFICIAL, env, served  # noqa: F401 (fixtures)
from videogen import write_video
from weightfiles import hand_mmaction2, tiny_clip_visual, tiny_official

VIDEO = torch.randn(2, 3, 8, 64, 64)
K400 = set(load_labels("kinetics400"))


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def run(*args, timeout=300):
    """The CLI as a user runs it: a real subprocess with this process's environment (cache, mirror, registry)."""
    return subprocess.run([sys.executable, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=timeout)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 24, width=80, height=64)


def _cache_files():
    d = dl.weights_dir()
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


# ----------------------------------------------------------------------------- done-when: predict by name
def _table(stdout: str) -> list[tuple[float, str]]:
    return [(float(m.group(1)), m.group(2)) for m in re.finditer(r"^\s+\d+\.\s+([0-9.]+)\s+(.+)$", stdout, re.M)]


def test_predict_by_name_downloads_verifies_caches_and_prints_kinetics_classes(env, video):
    """UNIFORMERV2_MIRROR=http://127.0.0.1:PORT uniformerv2 predict VIDEO --model NAME, twice, then a bad file."""
    name = "tiny_k400_8x64.test_official"
    assert os.environ["UNIFORMERV2_MIRROR"] == env.url
    first = run("predict", video, "--model", name, "--device", "cpu", "--dtype", "fp32", "--top-k", "5")
    assert first.returncode == 0, first.stderr
    rows = _table(first.stdout)
    assert len(rows) == 5 and all(label in K400 for _, label in rows), first.stdout
    # the same predictions as the source model in this process
    src, _ = tiny_official()
    api = VideoClassifier(src, device="cpu", dtype="fp32").predict(str(video), top_k=5)
    assert [label for _, label in rows] == [s.label for s in api.top_k]
    np.testing.assert_allclose([p for p, _ in rows], [s.prob for s in api.top_k], atol=2e-3)
    # downloaded once through the mirror, verified, cached under $UNIFORMERV2_HOME/weights
    assert env.gets(OFFICIAL) == [None]
    cached = dl.weights_dir() / "tiny_k400_official.pyth"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == get_entry(name).sha256
    assert cached.read_bytes() == (env.root / OFFICIAL.lstrip("/")).read_bytes()
    # the second run makes no request and prints the same
    env.requests.clear()
    second = run("predict", video, "--model", name, "--device", "cpu", "--dtype", "fp32", "--top-k", "5")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and env.requests == []
    # a served file with one byte changed is refused (one line, both digests) and not cached
    before = _cache_files()
    bad = run("predict", video, "--model", "tiny_k400_8x64.test_broken", "--device", "cpu")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    actual = hashlib.sha256((env.root / BROKEN.lstrip("/")).read_bytes()).hexdigest()
    assert "checksum mismatch" in bad.stderr and f"got {actual}" in bad.stderr
    assert env.gets(BROKEN) == [None]
    assert [f for f in _cache_files() if not f.endswith(".lock")] == [f for f in before if not f.endswith(".lock")]
    assert not (dl.weights_dir() / "tiny_k400_broken.pyth").exists()


def test_unknown_names_are_one_line_errors_with_close_names(env, video):
    r = run("predict", video, "--model", "tiny_k400_8x64.test_oficial", "--device", "cpu")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "no such file or directory, nor a pretrained name; did you mean tiny_k400_8x64.test_official" in r.stderr
    for call in (u.load_model, u.from_pretrained, VideoClassifier.from_pretrained):
        with pytest.raises(u.UserError, match="did you mean tiny_k400_8x64.test_official"):
            call("tiny_k400_8x64.test_oficial")
    with pytest.raises(u.UserError, match="no weights of this preset can be downloaded.*--preset tiny_ssv2_8x64"):
        u.load_model("tiny_ssv2_8x64")
    with pytest.raises(u.UserError, match=r"missing\.pyth: no such file or directory \(a model directory"):
        u.load_model("missing.pyth")
    assert env.requests == []


# ----------------------------------------------------------------------------- info by name: no download
def test_info_by_name_answers_from_the_registry_without_a_request(env, capsys):
    """With an empty cache, `info NAME` prints architecture, classes, size and source and fetches nothing."""
    shipped = get_entry("k400_b16_8x224")
    r = run("info", "k400_b16_8x224")
    assert r.returncode == 0, r.stderr
    assert "arch: uniformerv2_b16 (width 768, 12 layers, patch 16, 224px)" in r.stdout
    assert "classes: 400 (labels: riding a bike, marching, dodgeball, ...)" in r.stdout
    assert f"file: {shipped.file} ({shipped.size:,} bytes, official layout" in r.stdout
    assert f"source {shipped.urls[0]}" in r.stdout and "cache: not downloaded" in r.stdout
    assert "parameters: 114,552,208" in r.stdout and "preset: k400_b16_8x224" in r.stdout
    # a test entry (in this process): again nothing fetched, nothing written
    assert cli(["info", "tiny_k400_8x64.test_official"]) == 0
    out = capsys.readouterr().out
    assert "format: official UniFormerV2 checkpoint" in out and "classes: 400" in out
    assert "label order of the head rows: kinetics400_uniformerv2_order (registry)" in out
    assert env.requests == [] and _cache_files() == []
    # once cached, the same name says where the file is; the description is the file's own
    path = dl.fetch("tiny_k400_8x64.test_official", progress=False)
    assert cli(["info", "tiny_k400_8x64.test_official"]) == 0
    cached = capsys.readouterr().out
    assert f"cache: {path}" in cached
    assert cli(["info", str(path)]) == 0
    direct = capsys.readouterr().out
    for key in ("format:", "arch:", "design:", "parameters:", "classes:"):
        line = next(x for x in direct.splitlines() if x.startswith(key))
        assert any(x.startswith(line) for x in cached.splitlines()), (line, cached)


# ----------------------------------------------------------------------------- a download that fails
@pytest.fixture
def closed_mirror(env, monkeypatch):
    """A mirror at a loopback port where nothing listens: every download fails at once, as without network."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("UNIFORMERV2_MIRROR", f"http://127.0.0.1:{port}")
    return f"http://127.0.0.1:{port}"


def _way_forward(stderr: str, name: str) -> None:
    entry = get_entry(name)
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert "cannot download http://127.0.0.1:" in stderr
    assert f"download {entry.urls[0]} and put it in {dl.weights_dir()}/" in stderr, stderr
    assert "UNIFORMERV2_MIRROR" in stderr, stderr


def test_a_failed_download_says_how_to_go_on_and_leaves_no_lock(closed_mirror, video):
    r = run("predict", video, "--model", "tiny_k400_8x64.test_official", "--device", "cpu")
    assert r.returncode == 2, r.stderr
    _way_forward(r.stderr, "tiny_k400_8x64.test_official")
    with pytest.raises(dl.DownloadError) as e:
        u.load_model("tiny_k400_8x64.test_mmaction2")
    _way_forward(str(e.value), "tiny_k400_8x64.test_mmaction2")
    assert _cache_files() == []  # no file, no .part, no .lock


@pytest.mark.parametrize("kind", ["scene", "motion"])
def test_finetune_fetches_its_weights_first_and_a_failure_leaves_no_run(closed_mirror, tmp_path, video, kind):
    from uniformerv2.engine.finetune import KINDS

    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for k in range(2):
            (data / c / f"{k}.mp4").write_bytes(video.read_bytes())
    out = tmp_path / "run"
    r = run("finetune", data, "--output", out, "--kind", kind)
    assert r.returncode == 2, (r.stdout, r.stderr)
    _way_forward(r.stderr, KINDS[kind].weights)
    assert "--from PATH" in r.stderr and "scanning" not in r.stdout
    assert not out.exists() and _cache_files() == []


# ----------------------------------------------------------------------------- the Python API by name
def test_load_model_from_pretrained_and_classifier_by_name(env, video):
    src, _ = tiny_official()
    name = "tiny_k400_8x64.test_official"
    model = u.load_model(name).eval()
    assert model.preset == "tiny_k400_8x64" and model.labels == load_labels("kinetics400_uniformerv2_order")
    assert model.data_config == src.data_config
    torch.testing.assert_close(model(VIDEO), src(VIDEO))
    again = u.from_pretrained(name, num_frames=16).eval()  # overrides as for a model directory
    assert again.cfg.num_frames == 16 and again.data_config.num_frames == 16
    assert torch.equal(again.head.fc.weight, src.head.fc.weight)
    bare = u.load_model("tiny_k400_8x64")  # a bare preset: its default entry (the first listed)
    assert torch.equal(bare.head.fc.weight, src.head.fc.weight)
    clf = VideoClassifier.from_pretrained(name, device="cpu", dtype="fp32")
    want = VideoClassifier(src, device="cpu", dtype="fp32").predict(str(video))
    np.testing.assert_allclose(clf.predict(str(video)).probs, want.probs, atol=1e-6)
    assert env.gets(OFFICIAL) == [None]  # four loads, one download


def test_mmaction2_name_loads_with_the_entrys_label_order(env):
    """The MMAction2 file (rows in alphabetical K400 order) loads into its preset: rows mapped back to the
    official order, logits equal the official model's class by class."""
    src, sd = tiny_official()
    official = ref.forward(sd, VIDEO, patch_size=8, heads=4, return_list=[0, 1, 2, 3], temporal_downsample=False)
    model = u.load_model("tiny_k400_8x64.test_mmaction2").eval()
    assert model.labels == src.labels and model.load_report.format == "mmaction2"
    assert _rel_err(model(VIDEO), official) <= 1e-5
    # with --preset of another frame count, the registry file still maps by name
    model16 = u.load_model("tiny_k400_8x64.test_mmaction2", preset="tiny_k400_8x64", num_frames=16)
    assert model16.cfg.num_frames == 16 and torch.equal(model16.head.fc.weight, src.head.fc.weight)
    assert env.gets(MMA) == [None]


def test_a_user_entry_with_its_own_classes_keeps_them(env, tmp_path, monkeypatch):
    names = ["assembling", "inspecting", "idle"]
    model, sd = tiny_official(labels=names, seed=2)
    alpha_model, alpha_sd = tiny_official(labels=load_labels("kinetics400"), seed=4)  # rows in alphabetical order
    root = env.root / "weights.example.org" / "team"
    root.mkdir(parents=True, exist_ok=True)
    torch.save(sd, root / "team.pyth")
    torch.save(alpha_sd, root / "alpha.pyth")
    digest = hashlib.sha256((root / "team.pyth").read_bytes()).hexdigest()
    reg = Path(os.environ["UNIFORMERV2_REGISTRY"])
    team = tmp_path / "team.json"
    team.write_text(json.dumps({"entries": [
        {"name": "tiny_k400_8x64.team", "file": "team.pyth", "urls": ["https://weights.example.org/team/team.pyth"],
         "sha256": digest, "layout": "official", "preset": "tiny_k400_8x64", "labels": names},
        {"name": "tiny_k400_8x64.alpha", "file": "alpha.pyth", "urls": ["https://weights.example.org/team/alpha.pyth"],
         "sha256": hashlib.sha256((root / "alpha.pyth").read_bytes()).hexdigest(), "layout": "official",
         "preset": "tiny_k400_8x64", "labels": "kinetics400"},
        {"name": "tiny_k400_8x64.lost", "file": "lost.pyth", "urls": ["https://weights.example.org/lost.pyth"],
         "sha256": digest, "layout": "official", "preset": "tiny_k400_8x99", "labels": names}]}))
    monkeypatch.setenv("UNIFORMERV2_REGISTRY", os.pathsep.join([str(reg), str(team)]))
    loaded = u.load_model("tiny_k400_8x64.team").eval()
    assert loaded.labels == names and loaded.cfg.num_classes == 3 and loaded.preset == "tiny_k400_8x64"
    torch.testing.assert_close(loaded(VIDEO), model.eval()(VIDEO))
    # an official-layout file whose rows follow another order: the entry's label order maps them by name
    alpha = u.load_model("tiny_k400_8x64.alpha").eval()
    assert alpha.labels == load_labels("kinetics400_uniformerv2_order")
    col = {c: i for i, c in enumerate(load_labels("kinetics400"))}
    want = alpha_model.eval()(VIDEO)[:, [col[c] for c in alpha.labels]]
    assert _rel_err(alpha(VIDEO), want) <= 1e-6
    # an entry naming a preset that does not exist: a clear error before any download
    env.requests.clear()
    with pytest.raises(u.UserError, match=r"tiny_k400_8x64.lost \(from .*team.json\) names the preset 'tiny_k400_8x99'"):
        u.load_model("tiny_k400_8x64.lost")
    assert env.requests == []


def test_create_model_pretrained_clip_arms_from_the_registered_file(env):
    visual = tiny_clip_visual()
    model = u.create_model("tiny_k400_8x64", pretrained="clip")  # image_entry(uniformerv2_tiny): clip_tiny.test
    assert model.load_report.format == "clip"
    assert torch.equal(model.state_dict()["blocks.2.attn.qkv.weight"],
                       visual["transformer.resblocks.2.attn.in_proj_weight"])
    assert torch.equal(model.state_dict()["stem.weight"][:, :, 0], visual["conv1.weight"])  # kt = 1
    by_name = u.create_model("tiny_ssv2_8x64", pretrained="clip_tiny.test")
    assert torch.equal(by_name.state_dict()["blocks.3.mlp.fc2.weight"], visual["transformer.resblocks.3.mlp.c_proj.weight"])
    assert env.gets(CLIP) == [None]
    with pytest.raises(u.UserError, match="no CLIP weights are registered for uniformerv2_nano"):
        u.create_model("uniformerv2_nano", pretrained="clip")
    with pytest.raises(u.UserError, match="whole UniFormerV2 model.*checkpoint="):
        u.create_model("tiny_k400_8x64", pretrained="tiny_k400_8x64.test_official")
    with pytest.raises(u.CheckpointError, match="clip_tiny.test is an image-ViT file.*pretrained="):
        u.load_model("clip_tiny.test")


def test_training_config_takes_names(env):
    from uniformerv2.engine.config import load_config
    from uniformerv2.engine.train import build_model

    model = build_model(load_config(None, ["model.pretrained=clip"]))
    assert model.load_report.format == "clip"
    assert torch.equal(model.state_dict()["blocks.0.mlp.fc1.weight"],
                       tiny_clip_visual()["transformer.resblocks.0.mlp.c_fc.weight"])
    src, _ = tiny_official()
    started = build_model(load_config(None, ["model.checkpoint=tiny_k400_8x64.test_mmaction2"]))
    assert started.load_report.format == "mmaction2" and torch.equal(started.head.fc.weight, src.head.fc.weight)


def test_cli_info_and_convert_take_names(env, tmp_path, capsys):
    assert cli(["info", "tiny_k400_8x64.test_mmaction2"]) == 0
    out = capsys.readouterr().out
    assert "name: tiny_k400_8x64.test_mmaction2" in out and "format: MMAction2" in out
    assert "label order of the head rows: kinetics400 (registry)" in out
    assert cli(["info", "clip_tiny.test"]) == 0
    out = capsys.readouterr().out
    assert "arms uniformerv2_tiny" in out and "format: image ViT (clip)" in out and "width 64, 4 layers" in out
    # convert by name: the MMAction2 file back to the official layout is the official file, tensor for tensor
    assert cli(["convert", "tiny_k400_8x64.test_mmaction2", str(tmp_path / "official.pyth"), "--to", "official"]) == 0
    _, sd = tiny_official()
    back = torch.load(tmp_path / "official.pyth", weights_only=True)
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    assert cli(["convert", "clip_tiny.test", str(tmp_path / "armed"), "--preset", "tiny_k400_8x64"]) == 0
    armed = u.from_pretrained(tmp_path / "armed")
    assert torch.equal(armed.state_dict()["blocks.1.norm1.weight"],
                       tiny_clip_visual()["transformer.resblocks.1.ln_1.weight"])
    assert cli(["convert", "clip_tiny.test", str(tmp_path / "x")]) == 2
    assert "is an image ViT: pass --preset NAME" in capsys.readouterr().err
    assert env.gets(MMA) == [None] and env.gets(CLIP) == [None]


# ----------------------------------------------------------------------------- local MMAction2 files
@pytest.fixture
def mm_file(tmp_path):
    src, sd = tiny_official(seed=5)
    path = tmp_path / "uniformerv2_tiny_k400-rgb_20990101-0123abcd.pth"
    ckpt = hand_mmaction2(sd, src.labels)
    torch.save(ckpt, path)
    return src, sd, ckpt, path


def test_local_mmaction2_file_through_load_model_gives_the_official_logits(mm_file):
    src, sd, _, path = mm_file
    official = ref.forward(sd, VIDEO, patch_size=8, heads=4, return_list=[0, 1, 2, 3], temporal_downsample=False)
    model = u.load_model(path, preset="tiny_k400_8x64").eval()
    assert model.labels == src.labels and model.load_report.format == "mmaction2"
    assert _rel_err(model(VIDEO), official) <= 1e-5
    # without a preset: the architecture from the shapes, the rows in the file's own (MMAction2) order
    bare = u.load_model(path).eval()
    assert bare.labels == load_labels("kinetics400") and bare.preset is None
    col = {c: i for i, c in enumerate(src.labels)}
    assert _rel_err(bare(VIDEO), official[:, [col[c] for c in bare.labels]]) <= 1e-5
    with pytest.raises(u.UserError, match="preset"):
        VideoClassifier.from_pretrained(path)  # classification needs the recipe


def test_convert_mmaction2_to_model_and_back_is_exact(mm_file, tmp_path, capsys):
    src, sd, ckpt, path = mm_file
    assert cli(["convert", str(path), str(tmp_path / "dir"), "--preset", "tiny_k400_8x64"]) == 0
    model = u.from_pretrained(tmp_path / "dir").eval()
    torch.testing.assert_close(model(VIDEO), src.eval()(VIDEO))
    out = tmp_path / "back.pth"
    capsys.readouterr()
    assert cli(["convert", str(tmp_path / "dir"), str(out), "--to", "mmaction2"]) == 0
    assert "head rows in MMAction2's kinetics400 order" in capsys.readouterr().err
    raw = torch.load(out, weights_only=True)  # MMAction2's own loader reads it the same way
    assert set(raw) == {"meta", "state_dict"}
    assert raw["meta"] == {"dataset_meta": {"classes": load_labels("kinetics400")}}
    assert list(raw["state_dict"]) == list(ckpt["state_dict"])
    for k, v in ckpt["state_dict"].items():
        assert raw["state_dict"][k].shape == v.shape and torch.equal(raw["state_dict"][k], v), k
    r = run("info", out)  # as a user runs it
    assert r.returncode == 0, r.stderr
    assert "format: MMAction2 UniFormerV2 checkpoint" in r.stdout and "classes: 400 (labels: abseiling" in r.stdout
    assert "label order of the head rows: MMAction2's kinetics400 (alphabetical)" in r.stdout


def test_convert_to_mmaction2_refuses_what_mmaction2_cannot_hold(tmp_path):
    perturb_(u.create_model("tiny_k400_8x64", frozen_backbone=True)).save_pretrained(tmp_path / "frozen")
    out = tmp_path / "frozen.pth"
    r = run("convert", tmp_path / "frozen", out, "--to", "mmaction2")  # as a user runs it: one line, exit 2
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "frozen-backbone" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))
    (tmp_path / "outdir").mkdir()
    assert cli(["convert", str(tmp_path / "frozen"), str(tmp_path / "outdir"), "--to", "mmaction2"]) == 2


def test_local_mmaction2_meta_objects_are_dropped_and_other_files_still_refused(tmp_path):
    from test_weights_mmaction2 import _RunsCode

    marker = tmp_path / "ran"
    src, sd = tiny_official()
    ckpt = hand_mmaction2(sd, src.labels, meta={"seed": np.int64(3), "hook": _RunsCode(marker), "epoch": 1})
    torch.save(ckpt, tmp_path / "mm.pth")
    with pytest.warns(UserWarning, match="dropped 2 object"):
        model = u.load_model(tmp_path / "mm.pth", preset="tiny_k400_8x64")
    assert torch.equal(model.head.fc.weight, src.head.fc.weight) and not marker.exists()
    # the same object beside an official state dict is refused as before (no MMAction2 meta to drop it from)
    torch.save({"model_state": sd, "hook": _RunsCode(marker)}, tmp_path / "official.pyth")
    with pytest.raises(u.CheckpointError, match="refusing to unpickle .*check_call"):
        u.load_model(tmp_path / "official.pyth", preset="tiny_k400_8x64")
    assert not marker.exists()
    assert read_mmaction2(tmp_path / "mm.pth")[1] == {"epoch": 1}
