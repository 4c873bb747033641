"""The TensorFlow port's Keras ``.h5`` weights: read with h5py by position, into the official architecture.

Two kinds of file: those the port's own Keras code wrote (``../shared/fixtures/keras/``, with the official
model's logits), and files this suite writes in the same layout (``keraswriter``, checked against the
former dataset by dataset) from random official-layout weights, served by a loopback HTTP server and
loaded by registry name.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import official_reference as ref
import uniformerv2 as u
from uniformerv2.errors import CheckpointError
from uniformerv2.labels import load_labels
from uniformerv2.model.presets import PRESETS
from uniformerv2.weights.keras import keras_to_official, load_keras_h5, read_keras_weights
from uniformerv2.weights.loading import read_checkpoint

from keraswriter import keras_layout, write_keras_h5
from weightfiles import tiny_official
from weights_server import FileServer

FIXTURES = ("tiny_k400", "tiny_ssv2")


def fixture(shared_dir, name):
    d = shared_dir / "fixtures" / "keras"
    meta = json.loads((d / f"{name}.json").read_text())
    return d / f"{name}.h5", meta, torch.from_numpy(np.load(d / f"{name}.input.npy")), \
        torch.from_numpy(np.load(d / f"{name}.logits.npy"))


def fixture_model(meta, **kw):
    return u.create_model("uniformerv2_tiny", **meta["model_config"], **kw).eval()


def groups_of(path):
    """[(layer group, [(weight name, array)])] of a Keras file, in load order, read with h5py directly."""
    def names(node):
        return [n.decode() if isinstance(n, bytes) else str(n) for n in node.attrs["weight_names"]]

    with h5py.File(path, "r") as f:
        layers = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs["layer_names"]]
        return [(g, [(n, f[g][n][()]) for n in names(f[g])]) for g in layers + ["top_level_model_weights"]]


# ----------------------------------------------------------------------------- the port's own files
@pytest.mark.parametrize("name", FIXTURES)
def test_port_file_reproduces_the_official_logits(shared_dir, name):
    path, meta, video, logits = fixture(shared_dir, name)
    model = fixture_model(meta, checkpoint=path)  # the .h5 alone; the architecture from the JSON
    assert model.load_report.format == "keras" and model.load_report.head == "kept"
    with torch.no_grad():
        out = model(video)
    diff = (out - logits).abs().max().item()
    assert diff <= 1e-4, diff
    # every dataset of the file used exactly once, every tensor of the model filled
    assert len(read_keras_weights(path)) == meta["h5"]["datasets"]
    sd, fmt, _ = read_checkpoint(path)
    assert fmt == "keras" and set(sd) == set(model.state_dict())


def test_batchnorm_uses_the_official_epsilon(shared_dir):
    path, meta, video, logits = fixture(shared_dir, "tiny_ssv2")
    model = fixture_model(meta, checkpoint=path)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 8 and all(m.eps == 1e-5 for m in norms)
    for m in norms:
        m.eps = 1e-3  # the port's Keras epsilon moves the logits far beyond the bound
    with torch.no_grad():
        assert (model(video) - logits).abs().max().item() > 5e-4


@pytest.mark.parametrize("name", FIXTURES)
def test_writer_mirrors_the_port_layout(shared_dir, name):
    """The test writer, fed the weights read back, writes the port's file again: same groups, same names, same
    shapes and values, in the same order."""
    path = fixture(shared_dir, name)[0]
    port = groups_of(path)
    mine = keras_layout(load_keras_h5(path))
    assert [g for g, _ in mine] == [g for g, _ in port]
    for (g, theirs), (_, ours) in zip(port, mine):
        assert [n for n, _ in ours] == [n for n, _ in theirs], g
        for (n, a), (_, b) in zip(theirs, ours):
            assert a.shape == b.shape and np.array_equal(a, b), n


def test_the_names_do_not_matter(shared_dir, tmp_path):
    """Other numeric suffixes (another process's counters), byte-string and split name lists: same tensors."""
    path = fixture(shared_dir, "tiny_ssv2")[0]
    shift = lambda n: re.sub(r"(dense|conv3d|normalization|attention)(_\d+)?/",
                             lambda m: f"{m.group(1)}_{int((m.group(2) or '_0')[1:]) * 7 + 3}/", n)
    renamed = [(g, [(shift(n), a) for n, a in ws]) for g, ws in groups_of(path)]
    assert sum(n != shift(n) for _, ws in groups_of(path) for n, _ in ws) > 150
    other = write_keras_h5(tmp_path / "renamed.h5", {}, layout=renamed, as_bytes=True, split=7)
    with h5py.File(other, "r") as f:
        assert "weight_names" not in f["TFTransformer"].attrs and "weight_names0" in f["TFTransformer"].attrs
    a, b = load_keras_h5(path), load_keras_h5(other)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_file_of_the_other_architecture_is_refused(shared_dir):
    path, _, _, _ = fixture(shared_dir, "tiny_k400")
    _, ssv2, _, _ = fixture(shared_dir, "tiny_ssv2")
    with pytest.raises(CheckpointError, match="no local MHRA") as e:
        fixture_model(ssv2, checkpoint=path)
    assert "\n" not in str(e.value)


def test_a_shuffled_or_foreign_file_is_a_one_line_error(shared_dir, tmp_path):
    path = fixture(shared_dir, "tiny_k400")[0]
    groups = groups_of(path)
    g, ws = groups[2]
    swapped = ws[:10] + [ws[11], ws[10]] + ws[12:]  # block 0's c_fc kernel and bias out of order
    bad = write_keras_h5(tmp_path / "bad.h5", {}, layout=groups[:2] + [(g, swapped)] + groups[3:])
    with pytest.raises(CheckpointError, match=r"Keras weight #13 .* has shape \[256\] where .*c_fc kernel") as e:
        load_keras_h5(bad)
    assert "\n" not in str(e.value)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CheckpointError, match="HDF5 file but not Keras weights"):
        read_checkpoint(tmp_path / "plain.h5")
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        read_checkpoint(cut)
    with pytest.raises(CheckpointError, match="not a UniFormerV2 file"):
        keras_to_official([("conv1/kernel:0", np.zeros((3, 3)))], "x.h5")


def test_without_h5py_the_error_says_what_to_install(shared_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py -> ImportError
    with pytest.raises(CheckpointError, match=r"needs h5py: pip install 'uniformerv2\[keras\]'"):
        read_checkpoint(fixture(shared_dir, "tiny_k400")[0])


# ----------------------------------------------------------------------------- files written in that layout
def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_load_model_predict_and_info_read_a_keras_file(tmp_path):
    from videogen import write_video

    model, sd = tiny_official("tiny_k400_8x64", seed=3)
    h5 = write_keras_h5(tmp_path / "TFUniFormerV2_TINY.h5", sd)
    pyth = tmp_path / "same.pyth"
    torch.save(sd, pyth)
    loaded = u.load_model(h5, preset="tiny_k400_8x64").eval()
    video = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), model(video), rtol=1e-5, atol=1e-6)
    clip = write_video(tmp_path / "clip.mp4", 24)
    outs = [cli("predict", clip, "--model", m, "--preset", "tiny_k400_8x64", "--device", "cpu", "--json")
            for m in (h5, pyth)]
    for r in outs:
        assert r.returncode == 0, r.stderr
    a, b = (json.loads(r.stdout)[0]["top_k"] for r in outs)
    assert [s["label"] for s in a] == [s["label"] for s in b]
    np.testing.assert_allclose([s["prob"] for s in a], [s["prob"] for s in b], atol=1e-5)
    r = cli("info", h5)
    assert r.returncode == 0, r.stderr
    assert "format: Keras .h5 weights" in r.stdout


HOST = "weights.example.org"
# (registry name, preset, ModelConfig options of the architecture): a Kinetics B/16, an L/14 and an SSv2 B/16
# with local MHRA, at tiny sizes (the L/14 shape: patch 14, more layers and heads than the B/16 one)
KINDS = {
    "b16": ("tiny_k400_8x64.test_keras", "tiny_k400_8x64", {}),
    "l14": ("tiny_k400_8x64.test_keras_l14", "tiny_k400_8x64",
            dict(patch_size=14, img_size=56, depth=6, num_heads=8, global_layers=[2, 3, 4, 5])),
    "ssv2": ("tiny_ssv2_8x64.test_keras", "tiny_ssv2_8x64", {}),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / HOST / "keras").mkdir(parents=True)
    sds = {}
    for seed, (kind, (_, preset, opts)) in enumerate(KINDS.items()):
        _, sd = tiny_official(preset, seed=seed + 11, **opts)
        sds[kind] = sd
        write_keras_h5(root / HOST / "keras" / f"TFUniFormerV2_{kind}.h5", sd)
    # PyTorchModelHubMixin's layout: model.safetensors with the official names, without ``backbone.``
    _, sd = tiny_official("tiny_k400_8x64", seed=21)
    sds["hub_mixin"] = sd
    (root / HOST / "hub").mkdir()
    save_file({k[len("backbone."):]: v.contiguous() for k, v in sd.items()},
              root / HOST / "hub" / "model.safetensors")
    server = FileServer(root)
    yield server, sds
    server.close()


@pytest.fixture
def env(tmp_path, monkeypatch, served):
    server, _ = served
    server.requests.clear()
    for var in ("UNIFORMERV2_OFFLINE", "HF_HUB_OFFLINE", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("UNIFORMERV2_HOME", str(tmp_path / "home"))
    entries = []
    for kind, (name, preset, _) in KINDS.items():
        f = server.root / HOST / "keras" / f"TFUniFormerV2_{kind}.h5"
        digest = None if kind == "ssv2" else hashlib.sha256(f.read_bytes()).hexdigest()  # ssv2: none published
        entries.append({"name": name, "file": f.name, "urls": [f"https://{HOST}/keras/{f.name}"],
                        "sha256": digest, "size": f.stat().st_size, "layout": "keras", "preset": preset,
                        "origin": "ported", "labels": PRESETS[preset].labels})
    entries.append({"name": "tiny_k400_8x64.test_hub_mixin", "file": "hub_mixin_tiny.safetensors",
                    "urls": [f"https://{HOST}/hub/model.safetensors"], "sha256": None, "layout": "official",
                    "preset": "tiny_k400_8x64", "origin": "ported", "labels": PRESETS["tiny_k400_8x64"].labels})
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"entries": entries}))
    monkeypatch.setenv("UNIFORMERV2_REGISTRY", str(reg))
    monkeypatch.setenv("UNIFORMERV2_MIRROR", server.url)
    return served


@pytest.mark.parametrize("kind", [*KINDS, "hub_mixin"])
def test_by_name_through_the_mirror_gives_the_official_logits(env, kind):
    _, sds = env
    name, preset, opts = KINDS.get(kind, ("tiny_k400_8x64.test_hub_mixin", "tiny_k400_8x64", {}))
    model = u.load_model(name, **opts).eval()
    assert model.load_report.format == ("official" if kind == "hub_mixin" else "keras")
    cfg = model.cfg
    torch.manual_seed(0)
    video = torch.randn(2, 3, cfg.num_frames, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        out = model(video)
        expected = ref.forward(sds[kind], video, patch_size=cfg.patch_size, heads=cfg.num_heads,
                               return_list=cfg.global_layers, temporal_downsample=cfg.temporal_downsample)
    rel = ((out - expected).abs().max() / expected.abs().max()).item()
    assert rel <= 1e-5, rel
    if kind == "ssv2":  # BatchNorm statistics included
        assert sum("running_var" in k for k in sds[kind]) == 8


def test_predict_by_name_prints_something_something_classes(env, tmp_path):
    from videogen import write_video

    clip = write_video(tmp_path / "clip.mp4", 24)
    r = cli("predict", clip, "--model", "tiny_ssv2_8x64.test_keras", "--device", "cpu", "--json", env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    top = json.loads(r.stdout)[0]["top_k"]
    ssv2 = load_labels("something_something_v2")
    assert top and all(s["label"] == ssv2[s["index"]] for s in top)


def test_an_entry_without_a_published_digest(env, capsys, monkeypatch):
    """The first download prints and records the file's sha256; the listing says "unverified source";
    UNIFORMERV2_REQUIRE_DIGEST=1 refuses the entry."""
    from uniformerv2.cli import main
    from uniformerv2.weights import download as dl
    from uniformerv2.weights.registry import get_entry

    server, _ = env
    entry = get_entry("tiny_ssv2_8x64.test_keras")
    assert entry.sha256 == "" and not entry.verified_source and entry.to_dict()["sha256"] is None
    monkeypatch.setenv("UNIFORMERV2_REQUIRE_DIGEST", "1")
    with pytest.raises(dl.DownloadError, match="no published digest.*UNIFORMERV2_REQUIRE_DIGEST=1 refuses"):
        dl.fetch(entry, progress=False)
    assert server.gets(f"/{HOST}/keras/{entry.file}") == []
    monkeypatch.delenv("UNIFORMERV2_REQUIRE_DIGEST")
    path = dl.fetch(entry, progress=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"has sha256 {digest}" in capsys.readouterr().err
    assert json.loads(dl._sidecar(path, "sha256").read_text())["sha256"] == digest
    assert dl.fetch(entry) == path and len(server.gets(f"/{HOST}/keras/{entry.file}")) == 1
    assert main(["models", "--pretrained", "tiny_*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(x for x in lines if x.startswith("tiny_ssv2_8x64.test_keras"))
    assert "unverified source" in line and "keras" in line and line.rstrip().endswith("yes")
    line = next(x for x in lines if x.startswith("tiny_k400_8x64.test_keras "))
    assert "unverified" not in line and "sha256" in line
    assert main(["info", "tiny_ssv2_8x64.test_keras"]) == 0
    assert "no published digest: unverified source" in capsys.readouterr().out


def test_shipped_entries_of_the_port_and_the_hub_mixin_copy(monkeypatch):
    monkeypatch.delenv("UNIFORMERV2_REGISTRY", raising=False)
    from uniformerv2.weights.registry import list_entries

    keras = [e for e in list_entries() if e.layout == "keras"]
    assert len(keras) == 30 and all(e.preset in PRESETS and not e.verified_source for e in keras)
    assert all(e.urls[0] == f"https://github.com/innat/UniFormerV2/releases/download/v1.0/{e.file}" for e in keras)
    assert {e.preset for e in keras} >= {"anet_l14_16x224", "hacs_l14_32x224", "k400_l14_64x336", "k710_l14_8x336"}
    hub = [e for e in list_entries() if "not-lain" in e.urls[0]]
    assert len(hub) == 1 and hub[0].layout == "official" and not hub[0].verified_source
