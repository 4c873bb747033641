"""Pretrained weights by name: registry, download, verification, cache, resume, lock, offline, mirror.

Everything goes through a real HTTP server on 127.0.0.1 serving real files (official, MMAction2 and
OpenAI-CLIP layouts written from tiny random models); no test touches the network.
"""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import uniformerv2 as u
from uniformerv2.cli import main as cli
from uniformerv2.labels import load_labels
from uniformerv2.model.presets import ARCHS, PRESETS
from uniformerv2.weights import download as dl
from uniformerv2.weights.registry import get_entry, list_entries, load_registry

from weightfiles import hand_mmaction2, tiny_clip_visual, tiny_official, write_openai_clip
from weights_server import FileServer

HOST = "weights.example.org"
OFFICIAL = f"/{HOST}/uv2/tiny_k400_official.pyth"
MMA = f"/{HOST}/uv2/tiny_k400_mmaction2.pth"
CLIP = f"/{HOST}/clip/tiny_clip.pt"
BROKEN = f"/{HOST}/uv2/tiny_k400_broken.pyth"


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    model, sd = tiny_official()
    for p in (OFFICIAL, MMA, CLIP, BROKEN):
        (root / p.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, root / OFFICIAL.lstrip("/"))
    torch.save(hand_mmaction2(sd, model.labels), root / MMA.lstrip("/"))
    write_openai_clip(root / CLIP.lstrip("/"), tiny_clip_visual())
    data = bytearray((root / OFFICIAL.lstrip("/")).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed: the registry keeps the real file's digest
    (root / BROKEN.lstrip("/")).write_bytes(bytes(data))
    server = FileServer(root)
    yield server
    server.close()


def _entry(name, path, layout, digest, size, **extra):
    return {"name": name, "file": Path(path).name, "urls": [f"https://{path.lstrip('/')}"], "sha256": digest,
            "size": size, "layout": layout, "origin": "user", **extra}


@pytest.fixture
def env(tmp_path, monkeypatch, served):
    """A fresh cache, no offline/mirror settings, and a test registry whose URLs point at the server."""
    for var in ("UNIFORMERV2_OFFLINE", "HF_HUB_OFFLINE", "UNIFORMERV2_MIRROR", "http_proxy", "https_proxy",
                "HTTP_PROXY", "HTTPS_PROXY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("UNIFORMERV2_HOME", str(tmp_path / "home"))
    served.requests.clear()
    served.drop_after.clear()
    served.ranges, served.delay = True, 0.0
    root = served.root
    real = root / OFFICIAL.lstrip("/")
    entries = [
        _entry("tiny_k400_8x64.test_official", OFFICIAL, "official", sha256(real), real.stat().st_size,
               preset="tiny_k400_8x64", labels="kinetics400_uniformerv2_order", top1=12.5, views="1x1",
               dataset="Kinetics-400"),
        _entry("tiny_k400_8x64.test_mmaction2", MMA, "mmaction2", sha256(root / MMA.lstrip("/"))[:8], None,
               preset="tiny_k400_8x64", labels="kinetics400"),
        _entry("clip_tiny.test", CLIP, "clip", sha256(root / CLIP.lstrip("/")), None, arch="uniformerv2_tiny"),
        # served with one byte changed, listed with the real file's digest
        _entry("tiny_k400_8x64.test_broken", BROKEN, "official", sha256(real), real.stat().st_size,
               preset="tiny_k400_8x64", labels="kinetics400_uniformerv2_order"),
    ]
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"entries": entries}))
    monkeypatch.setenv("UNIFORMERV2_REGISTRY", str(reg))
    monkeypatch.setenv("UNIFORMERV2_MIRROR", served.url)  # https://HOST/PATH -> http://127.0.0.1:PORT/HOST/PATH
    return served


# ----------------------------------------------------------------------------- download, verify, cache
def test_download_verifies_caches_and_second_run_makes_no_request(env, capsys):
    path = dl.fetch("tiny_k400_8x64.test_official", progress=False)
    assert path == Path(os.environ["UNIFORMERV2_HOME"]) / "weights" / "tiny_k400_official.pyth"
    assert path.read_bytes() == (env.root / OFFICIAL.lstrip("/")).read_bytes()
    assert env.gets(OFFICIAL) == [None]
    assert not list(path.parent.glob(".*.part"))
    # the mirror rewrite: the registry says https://weights.example.org/..., the server saw /HOST/PATH
    assert get_entry("tiny_k400_8x64.test_official").urls[0] == f"https://{OFFICIAL.lstrip('/')}"
    assert dl.fetch("tiny_k400_8x64.test_official") == path
    assert cli(["download", "tiny_k400_8x64.test_official", "--quiet"]) == 0
    assert str(path) in capsys.readouterr().out
    assert env.gets(OFFICIAL) == [None]  # the second and third runs made no request
    # the downloaded file is the real model: it loads and gives the source model's logits
    src, _ = tiny_official()
    video = torch.randn(1, 3, 8, 64, 64)
    model = u.create_model("tiny_k400_8x64", checkpoint=path).eval()
    torch.testing.assert_close(model(video), src(video))


def test_a_hand_placed_file_is_verified_once_and_a_wrong_one_replaced(env):
    entry = get_entry("tiny_k400_8x64.test_official")
    dest = dl.cache_path(entry)
    dest.parent.mkdir(parents=True)
    dest.write_bytes((env.root / OFFICIAL.lstrip("/")).read_bytes())
    assert dl.fetch(entry) == dest and env.gets(OFFICIAL) == []
    assert json.loads(dl._sidecar(dest, "sha256").read_text())["sha256"] == entry.sha256
    dest.write_bytes(b"not the weights")  # size/mtime change invalidate the note: re-hashed, re-downloaded
    assert dl.fetch(entry, progress=False) == dest and env.gets(OFFICIAL) == [None]
    assert sha256(dest) == entry.sha256


def test_checksum_mismatch_fails_in_one_line_and_caches_nothing(env):
    entry = get_entry("tiny_k400_8x64.test_broken")
    actual = sha256(env.root / BROKEN.lstrip("/"))
    with pytest.raises(dl.DownloadError) as e:
        dl.fetch(entry, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and f"expected sha256 {entry.sha256}" in msg and f"got {actual}" in msg
    cache = dl.cache_path(entry).parent
    assert not dl.cache_path(entry).exists() and not [p for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert cli(["download", "tiny_k400_8x64.test_broken", "--quiet"]) == 2


def test_prefix_digest_is_checked(env):
    entry = get_entry("tiny_k400_8x64.test_mmaction2")
    assert len(entry.sha256) == 8
    path = dl.fetch(entry, progress=False)
    assert sha256(path).startswith(entry.sha256)


def test_mmaction2_and_clip_files_by_name_load_into_models(env, tmp_path):
    from uniformerv2.weights.mmaction2 import mmaction2_to_official, read_mmaction2

    entry = get_entry("tiny_k400_8x64.test_mmaction2")
    sd, meta = read_mmaction2(dl.fetch(entry, progress=False))
    official, labels = mmaction2_to_official(sd, meta)
    assert labels == entry.labels == "kinetics400"
    torch.save(official, tmp_path / "converted.pyth")
    model = u.create_model(entry.preset, checkpoint=tmp_path / "converted.pyth",
                           checkpoint_labels=load_labels(labels)).eval()
    src, _ = tiny_official()
    video = torch.randn(1, 3, 8, 64, 64)
    torch.testing.assert_close(model(video), src(video), rtol=1e-5, atol=1e-6)
    clip = get_entry("clip_tiny.test")
    armed = u.create_model("tiny_k400_8x64", pretrained=dl.fetch(clip, progress=False))
    assert armed.load_report.format == "clip"
    assert torch.equal(armed.state_dict()["blocks.3.mlp.fc1.weight"],
                       tiny_clip_visual()["transformer.resblocks.3.mlp.c_fc.weight"])


# ----------------------------------------------------------------------------- resume
def test_dropped_connection_resumes_with_a_range_request(env):
    size = (env.root / OFFICIAL.lstrip("/")).stat().st_size
    env.drop_after[OFFICIAL] = [size // 3]
    path = dl.fetch("tiny_k400_8x64.test_official", progress=False)
    assert sha256(path) == get_entry("tiny_k400_8x64.test_official").sha256
    assert env.gets(OFFICIAL) == [None, f"bytes={size // 3}-"]  # the second request resumed at the drop


def test_server_without_range_support_restarts(env):
    size = (env.root / OFFICIAL.lstrip("/")).stat().st_size
    env.ranges = False
    env.drop_after[OFFICIAL] = [size // 2]
    path = dl.fetch("tiny_k400_8x64.test_official", progress=False)
    assert sha256(path) == get_entry("tiny_k400_8x64.test_official").sha256
    assert len(env.gets(OFFICIAL)) == 2  # asked for a range, got the whole file again (200), wrote it from 0


def test_an_interrupted_run_is_resumed_by_the_next_one(env, monkeypatch):
    size = (env.root / OFFICIAL.lstrip("/")).stat().st_size
    monkeypatch.setattr(dl, "ATTEMPTS", 1)
    env.drop_after[OFFICIAL] = [size // 4]
    with pytest.raises(dl.DownloadError, match="connection dropped after") as e:
        dl.fetch("tiny_k400_8x64.test_official", progress=False)
    assert "\n" not in str(e.value)
    entry = get_entry("tiny_k400_8x64.test_official")
    part = dl._sidecar(dl.cache_path(entry), "part")
    have = part.stat().st_size
    assert have == size // 4 and not dl.cache_path(entry).exists()
    path = dl.fetch(entry, progress=False)
    assert sha256(path) == entry.sha256 and not part.exists()
    assert env.gets(OFFICIAL) == [None, f"bytes={have}-"]


# ----------------------------------------------------------------------------- offline, mirror, errors
@pytest.mark.parametrize("var", ["UNIFORMERV2_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_serves_the_cache_and_a_miss_says_where_to_put_the_file(env, monkeypatch, var):
    path = dl.fetch("tiny_k400_8x64.test_official", progress=False)
    monkeypatch.setenv(var, "1")
    env.requests.clear()
    assert dl.fetch("tiny_k400_8x64.test_official") == path
    entry = get_entry("clip_tiny.test")
    with pytest.raises(dl.DownloadError) as e:
        dl.fetch(entry)
    msg = str(e.value)
    assert "\n" not in msg and var in msg and entry.file in msg and entry.urls[0] in msg
    assert str(dl.weights_dir()) in msg
    assert env.requests == []


def test_mirror_rewrites_host_and_path(env, monkeypatch):
    assert dl.mirror_url("https://a.example/x/y.pth?download=1", "http://m:8/base/") == \
        "http://m:8/base/a.example/x/y.pth?download=1"
    monkeypatch.delenv("UNIFORMERV2_MIRROR")
    assert dl.mirror_url("https://a.example/x.pth") == "https://a.example/x.pth"
    monkeypatch.setenv("UNIFORMERV2_MIRROR", env.url + "/")
    dl.fetch("clip_tiny.test", progress=False)
    assert env.gets(CLIP) == [None]  # fetched from <mirror>/weights.example.org/clip/tiny_clip.pt


def test_network_errors_are_one_line_with_the_url(env, monkeypatch, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    monkeypatch.setenv("UNIFORMERV2_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(dl.DownloadError) as e:
        dl.fetch("clip_tiny.test", progress=False)
    assert "\n" not in str(e.value) and f"http://127.0.0.1:{port}/{CLIP.lstrip('/')}" in str(e.value)
    monkeypatch.setenv("UNIFORMERV2_MIRROR", env.url + "/nowhere")
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.fetch("clip_tiny.test", progress=False)
    r = subprocess.run([sys.executable, "-m", "uniformerv2", "download", "clip_tiny.test"], capture_output=True,
                       text=True, env=os.environ.copy())
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "HTTP 404" in r.stderr


# ----------------------------------------------------------------------------- two processes
def test_two_processes_downloading_at_once_end_with_one_good_file(env, tmp_path):
    env.delay = 0.05  # ~1 s for the file: the two processes overlap
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from uniformerv2.weights.download import fetch
        me, other = Path(sys.argv[1]), Path(sys.argv[2])
        me.touch()
        while not other.exists():  # start together
            time.sleep(0.01)
        print(fetch("tiny_k400_8x64.test_official", progress=True))
    """)
    a, b = tmp_path / "a.ready", tmp_path / "b.ready"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(x), str(y)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy()) for x, y in ((a, b), (b, a))]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert sha256(path) == get_entry("tiny_k400_8x64.test_official").sha256
    assert env.gets(OFFICIAL) == [None]  # one download; the other process waited for the lock
    assert any("waiting for another process" in o[1] for o in outs)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, f".{path.name}.sha256"])


# ----------------------------------------------------------------------------- CLI listing
def test_models_pretrained_lists_size_accuracy_and_cache(env, capsys):
    assert cli(["models", "--pretrained", "tiny_*"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("tiny_k400_8x64.test_official"))
    assert "12.5" in line and "1x1" in line and "8x64" in line and line.rstrip().endswith("-")
    dl.fetch("tiny_k400_8x64.test_official", progress=False)
    assert cli(["models", "--pretrained", "tiny_k400_8x64.test_official"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("tiny_k400_8x64.test_official"))
    assert line.rstrip().endswith("yes")


# ----------------------------------------------------------------------------- registries
def test_shipped_registry_is_well_formed(monkeypatch):
    monkeypatch.delenv("UNIFORMERV2_REGISTRY", raising=False)
    from importlib import resources

    raw = json.loads(resources.files("uniformerv2.weights").joinpath("registry.json").read_text())
    entries = list_entries()
    assert len(entries) == len(raw["entries"]) == 63
    assert all("size" in e for e in raw["entries"])  # a size, or an explicit null (unknown)
    assert len({e.file for e in entries}) == len(entries)
    for e in entries:
        assert e.urls and all(url.startswith("https://") for url in e.urls), e.name
        assert len(e.sha256) in (8, 64) or e.sha256 == "" and e.origin == "ported", e.name  # "": none published
        assert e.license and e.origin != "user", e.name
        assert e.size is None or e.size > 100_000_000, e.name
        if e.is_video_model:
            preset = PRESETS[e.preset]  # a known preset ...
            assert e.arch == preset.arch and e.name.startswith(e.preset + "."), e.name
            assert len(load_labels(e.labels)) == preset.model["num_classes"], e.name  # ... and label list
            assert e.views is None or e.views in ("4x3", "2x3", "10x3", "1x3"), e.name
        else:
            assert e.arch in ARCHS and e.layout in ("clip", "clip_visual"), e.name
    mm = [e for e in entries if e.layout == "mmaction2"]
    assert len(mm) == 23
    for e in mm + [e for e in entries if e.layout == "clip_visual"]:  # MMAction2 names end in -<sha256[:8]>.pth
        assert e.file.endswith(f"-{e.sha256}.pth") and e.urls[0].endswith("/" + e.file), e.name
        assert e.urls[0].startswith("https://download.openmmlab.com/mmaction/v1.0/recognition/uniformerv2/")
    for e in entries:
        if e.layout == "clip":  # OpenAI's URLs carry the full sha256
            assert e.urls[0].split("/")[-2] == e.sha256
    # the two URLs MMAction2's metafile gets wrong, as its README gives them
    assert get_entry("k700_l14_32x336.k710_ft").sha256 == "95cf9046"
    assert "/uniformerv2-base-p16-res224_clip-pre_u8_kinetics710-rgb/" in get_entry("k710_b16_8x224.clip").urls[0]
    hf = get_entry("k400_b16_8x224")  # a bare preset resolves to its default weights: the authors' file
    assert hf.name == "k400_b16_8x224.k710_ft" and hf.size == 458_289_355 and hf.layout == "official"
    assert hf.sha256 == "743da61c97f6281bd11ef1d364c2101698c8e89ff7722ee957378e36ef344005"
    assert get_entry("mit_b16_8x224").size == 458_101_707


def test_extra_registry_adds_and_overrides_entries(tmp_path, monkeypatch):
    extra = tmp_path / "team.json"
    extra.write_text(json.dumps({"entries": [
        {"name": "k400_b16_8x224.k710_ft", "urls": ["https://intranet.example/k400.pyth"]},
        {"name": "k400_b16_8x224.team", "file": "team.pth", "urls": ["https://intranet.example/team.pth"],
         "sha256": "ab" * 32, "layout": "uniformerv2", "preset": "k400_b16_8x224", "labels": ["a", "b"],
         "default": True},
    ]}))
    monkeypatch.setenv("UNIFORMERV2_REGISTRY", os.pathsep.join([str(extra)]))
    e = get_entry("k400_b16_8x224.k710_ft")
    assert e.urls == ("https://intranet.example/k400.pyth",) and e.size == 458_289_355  # other fields kept
    assert get_entry("k400_b16_8x224").name == "k400_b16_8x224.team"  # marked default
    assert get_entry("k400_b16_8x224.team").labels == ("a", "b")
    assert len(load_registry()) == 64
    bad = tmp_path / "bad.json"
    for body, match in (({"entries": [{"name": "x.y", "file": "f", "urls": ["https://h/f"], "sha256": "ab" * 4,
                                       "layout": "official", "preset": "k400_b16_8x224", "labels": "kinetics400",
                                       "colour": 1}]}, "unknown field"),
                        ({"entries": [{"name": "x.y", "file": "f", "urls": ["https://h/f"], "sha256": "xyz",
                                       "layout": "official"}]}, "hex digits"),
                        ({"entries": [{"name": "noperiod"}]}, "missing"),
                        ("{", "not valid JSON")):
        bad.write_text(body if isinstance(body, str) else json.dumps(body))
        monkeypatch.setenv("UNIFORMERV2_REGISTRY", str(bad))
        with pytest.raises(u.UserError, match=match):
            load_registry()
        assert cli(["models", "--pretrained"]) == 2
    monkeypatch.setenv("UNIFORMERV2_REGISTRY", str(tmp_path / "missing.json"))
    with pytest.raises(u.UserError, match="not a file"):
        load_registry()


def test_unknown_name_suggests_close_ones(monkeypatch):
    monkeypatch.delenv("UNIFORMERV2_REGISTRY", raising=False)
    with pytest.raises(u.UserError, match="did you mean k400_b16_8x224.k710_ft"):
        get_entry("k400_b16_8x224.k710_fr")
