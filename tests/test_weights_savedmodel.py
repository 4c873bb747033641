"""The TensorFlow port's zipped SavedModels: their variables read without TensorFlow (tensor bundle: table
file + data file + object graph), in Keras's ``.h5`` order, into the official architecture.

Two kinds of file: one TensorFlow itself wrote from the port's model (``data/tf_savedmodel_tiny_ssv2.zip``,
its values a known function of their place in the ``.h5`` order; see ``data/README.md``), and files this
suite writes in the same layout (``savedmodelwriter``, checked against the former key by key) from random
official-layout weights, served by a loopback HTTP server and loaded by registry name.
"""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import official_reference as ref
import uniformerv2 as u
from uniformerv2.errors import CheckpointError
from uniformerv2.labels import load_labels
from uniformerv2.model.presets import PRESETS
from uniformerv2.weights import savedmodel as sm
from uniformerv2.weights.loading import read_checkpoint

from savedmodelwriter import bundle, savedmodel_variables, write_savedmodel_zip
from weightfiles import tiny_official
from weights_server import FileServer

TF_FILE = Path(__file__).parent / "data" / "tf_savedmodel_tiny_ssv2.zip"
TF_ARCH = dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=16, num_frames=4, temporal_downsample=True,
               local_mhra="double", global_layers=[0, 1], num_classes=5)


def h5_value(i: int, shape) -> np.ndarray:
    """What the i-th tensor (in ``.h5`` order) of the TensorFlow-written file holds (data/README.md)."""
    n = int(np.prod(shape))
    return ((i * 97 + np.arange(n)) % 512 / 64.0 - 4.0).reshape(shape).astype(np.float32)


def raw_bundle(path):
    """(table entries, object-graph nodes) of a SavedModel zip, read with the reader's pieces."""
    with zipfile.ZipFile(path) as z:
        member = sm._index_member(z)
        table = sm.read_table(z.read(member))
        entries = {k: sm._Entry(v) for k, v in table.items() if k}
        raw = sm._read_entries(z, member[:-len("index")], 1, {sm.OBJECT_GRAPH_KEY: entries[sm.OBJECT_GRAPH_KEY]},
                               None)
    return table, sm._object_graph(sm._strings(raw[sm.OBJECT_GRAPH_KEY], 1, entries[sm.OBJECT_GRAPH_KEY].crc)[0])


# ----------------------------------------------------------------------------- the file TensorFlow wrote
def test_a_tensorflow_written_savedmodel_reads_in_h5_order():
    items = sm.read_savedmodel_weights(TF_FILE)
    assert len(items) == 123
    for i, (key, a) in enumerate(items):  # every tensor where Keras's .h5 puts it, bit for bit
        assert a.dtype == np.float32 and np.array_equal(a, h5_value(i, a.shape)), (i, key)
    assert items[0][1].shape == (3, 8, 8, 3, 32)  # conv1 first; the embeddings, held by the model itself, last
    assert [k for k, _ in items[-2:]] == ["class_embedding/.ATTRIBUTES/VARIABLE_VALUE",
                                          "positional_embedding/.ATTRIBUTES/VARIABLE_VALUE"]
    # the BatchNorm statistics: after the trainable tensors of the transformer, as in the .h5 (the model's own
    # ``variables`` list puts them after the backbone blocks instead)
    assert [a.shape for _, a in items[-10:-2]] == [(32,)] * 8
    model = u.create_model("uniformerv2_tiny", **TF_ARCH, checkpoint=TF_FILE).eval()
    assert model.load_report.format == "keras_savedmodel" and model.load_report.head == "kept"
    bn = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bn) == 4 and all(not torch.equal(m.running_var, torch.ones_like(m.running_var)) for m in bn)


def test_no_tensorflow_nor_h5py_is_needed(monkeypatch):
    for module in ("tensorflow", "h5py", "google.protobuf"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it would fail
    assert read_checkpoint(TF_FILE)[1] == "keras_savedmodel"


def test_the_writer_mirrors_the_tensorflow_layout(tmp_path):
    """Fed the weights read back, the test writer writes the same keys, shapes, values and object-graph lists."""
    official = sm.load_savedmodel_zip(TF_FILE)
    mine = write_savedmodel_zip(tmp_path / "mine.zip", official, block_size=512)  # several table blocks
    theirs_table, theirs = raw_bundle(TF_FILE)
    mine_table, ours = raw_bundle(mine)
    assert set(mine_table) == set(theirs_table)
    for key in theirs_table:
        if key and key != sm.OBJECT_GRAPH_KEY:
            a, b = sm._Entry(theirs_table[key]), sm._Entry(mine_table[key])
            assert (a.dtype, a.shape, a.size, a.offset, a.crc) == (b.dtype, b.shape, b.size, b.offset, b.crc), key
    root_t, root_m = theirs[0]["children"], ours[0]["children"]
    for name in ("variables", "trainable_variables", "keras_api", "conv1", "class_embedding",
                 "positional_embedding", "ln_pre", "transformer"):
        assert name in root_m
    assert set(root_m) <= set(root_t)  # the writer leaves out only functions and signatures, in TensorFlow's order
    assert [n for n in root_t if n in root_m] == list(root_m)
    keys = lambda nodes, ids: [nodes[i]["keys"]["VARIABLE_VALUE"] for i in ids]
    for owner in ("conv1", "ln_pre", "transformer"):
        for listed in ("variables", "trainable_variables"):
            assert keys(theirs, sm._listed(theirs, root_t[owner], listed)) == \
                keys(ours, sm._listed(ours, root_m[owner], listed)), (owner, listed)
    assert keys(theirs, sm._listed(theirs, 0, "variables")) == keys(ours, sm._listed(ours, 0, "variables"))
    a, b = sm.read_savedmodel_weights(TF_FILE), sm.read_savedmodel_weights(mine)
    assert [k for k, _ in a] == [k for k, _ in b] and all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b))


def test_damaged_or_foreign_zips_are_one_line_errors(tmp_path, monkeypatch):
    data = TF_FILE.read_bytes()
    with zipfile.ZipFile(TF_FILE) as z:
        index = z.read("TFUniFormerV2_TINY_SSV2/variables/variables.index")
        blob = z.read("TFUniFormerV2_TINY_SSV2/variables/variables.data-00000-of-00001")

    def zipped(name, index_bytes, data_bytes, compression=zipfile.ZIP_STORED):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", compression) as z:
            z.writestr("M/variables/variables.index", index_bytes)
            z.writestr("M/variables/variables.data-00000-of-00001", data_bytes)
        return path

    def refused(path, match):
        with pytest.raises(CheckpointError, match=match) as e:
            read_checkpoint(path)
        assert "\n" not in str(e.value)

    flipped = bytearray(index)
    flipped[100] ^= 0x40  # inside the data block: its crc32c fails
    refused(zipped("index.zip", bytes(flipped), blob), r"not a readable TensorFlow SavedModel .*the index: data block "
                                                       r"checksum mismatch")
    refused(zipped("footer.zip", index[:-1] + b"\x00", blob), "no table footer")
    small = bytearray(blob)
    small[4] ^= 1  # inside the first tensor (class_embedding): its own crc32c fails
    refused(zipped("tensor.zip", index, bytes(small)), "tensor class_embedding.* checksum mismatch")
    refused(zipped("short.zip", index, blob[:-100]), "lies outside its data file")
    # a tensor too large for the pure-Python crc32c (none here: the limit is lowered to 0): the zip's own CRC-32
    # over the whole data file catches its damage
    monkeypatch.setattr(sm, "CRC_CHECKED_BYTES", 0)
    damaged = zipped("large.zip", index, blob)
    archive = bytearray(damaged.read_bytes())
    archive[archive.find(blob[:256]) + 4] ^= 1  # the stored bytes changed after the zip recorded their CRC-32
    damaged.write_bytes(bytes(archive))
    refused(damaged, "damaged or truncated .*Bad CRC-32")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    refused(cut, "truncated")
    # a SavedModel of something else than a Keras model: no 'variables' list on its root
    tensors, _, _ = savedmodel_variables(sm.load_savedmodel_zip(TF_FILE))
    index2, data2 = bundle(tensors, b"\x0a\x00")  # one empty node
    refused(zipped("plain.zip", index2, data2), "no 'variables' list")


# ----------------------------------------------------------------------------- files written in that layout
HOST = "weights.example.org"
NAME, PRESET = "tiny_ssv2_8x64.test_keras_savedmodel", "tiny_ssv2_8x64"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / HOST / "v1.1").mkdir(parents=True)
    _, sd = tiny_official(PRESET, seed=31)  # an SSv2 model with double local MHRA and BatchNorm statistics
    write_savedmodel_zip(root / HOST / "v1.1" / "TFUniFormerV2_TINY_SSV2.zip", sd)
    release = root / "github.com" / "innat" / "UniFormerV2" / "releases" / "download" / "v1.1"
    release.mkdir(parents=True)  # the shipped entry's URL, under the mirror (a tiny file in its place)
    (release / "TFUniFormerV2_SSV2_B16_16x224.zip").write_bytes(TF_FILE.read_bytes())
    server = FileServer(root)
    yield server, sd
    server.close()


@pytest.fixture
def env(tmp_path, monkeypatch, served):
    server, _ = served
    server.requests.clear()
    for var in ("UNIFORMERV2_OFFLINE", "HF_HUB_OFFLINE", "UNIFORMERV2_REQUIRE_DIGEST", "http_proxy", "https_proxy",
                "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("UNIFORMERV2_HOME", str(tmp_path / "home"))
    f = server.root / HOST / "v1.1" / "TFUniFormerV2_TINY_SSV2.zip"
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"entries": [
        {"name": NAME, "file": f.name, "urls": [f"https://{HOST}/v1.1/{f.name}"], "sha256": None, "size": None,
         "layout": "keras_savedmodel", "preset": PRESET, "origin": "ported", "labels": PRESETS[PRESET].labels}]}))
    monkeypatch.setenv("UNIFORMERV2_REGISTRY", str(reg))
    monkeypatch.setenv("UNIFORMERV2_MIRROR", server.url)
    return served


def test_by_name_through_the_mirror_gives_the_official_logits(env, capsys):
    _, sd = env
    model = u.load_model(NAME).eval()
    assert model.load_report.format == "keras_savedmodel"
    assert "has sha256" in capsys.readouterr().err  # no published digest: the first download prints its own
    cfg = model.cfg
    torch.manual_seed(0)
    video = torch.randn(2, 3, cfg.num_frames, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        out = model(video)
        expected = ref.forward(sd, video, patch_size=cfg.patch_size, heads=cfg.num_heads,
                               return_list=cfg.global_layers, temporal_downsample=cfg.temporal_downsample)
    rel = ((out - expected).abs().max() / expected.abs().max()).item()
    assert rel <= 1e-5, rel
    assert sum("running_var" in k for k in sd) == 8  # BatchNorm statistics included
    stats = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert len(stats) == 16 and all(not torch.equal(v, torch.zeros_like(v)) for v in stats.values())


def test_predict_by_name_prints_something_something_classes(env, tmp_path):
    from videogen import write_video

    clip = write_video(tmp_path / "clip.mp4", 24)
    r = subprocess.run([sys.executable, "-m", "uniformerv2", "predict", str(clip), "--model", NAME, "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    ssv2 = set(load_labels("something_something_v2"))
    ranked = [line.split(None, 2) for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(ranked) == 5 and all(name in ssv2 for _, _, name in ranked), r.stdout  # the top 5, by SSv2 name
    r = subprocess.run([sys.executable, "-m", "uniformerv2", "info", NAME], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ))
    assert r.returncode == 0 and "keras_savedmodel layout, no published digest" in r.stdout, r.stdout + r.stderr


def test_the_shipped_something_something_entry(monkeypatch, capsys):
    monkeypatch.delenv("UNIFORMERV2_REGISTRY", raising=False)
    from uniformerv2.cli import main
    from uniformerv2.weights.registry import get_entry

    e = get_entry("ssv2_b16_16x224.clip_keras")
    assert e.layout == "keras_savedmodel" and e.preset == "ssv2_b16_16x224" and not e.verified_source
    assert list(e.urls) == ["https://github.com/innat/UniFormerV2/releases/download/v1.1/TFUniFormerV2_SSV2_B16_16x224.zip"]
    assert e.labels == "something_something_v2" and e.is_video_model
    assert main(["models", "--pretrained", "ssv2_*"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ssv2_b16_16x224.clip_keras"))
    assert "keras_savedmodel" in line and "unverified source" in line


def test_the_shipped_name_downloads_through_the_mirror(env, capsys):
    """The real entry's URL, mapped under the mirror, cached, its sha256 printed, then read as a SavedModel
    (a tiny file stands in for the 650 MB B/16 one: loading it into the B/16 preset is left to the tiny entry)."""
    from uniformerv2.weights import download as dl
    from uniformerv2.weights.registry import get_entry

    server, _ = env
    path = dl.fetch(get_entry("ssv2_b16_16x224.clip_keras"), progress=False)
    assert len(server.gets("/github.com/innat/UniFormerV2/releases/download/v1.1/"
                           "TFUniFormerV2_SSV2_B16_16x224.zip")) == 1
    assert path.name == "TFUniFormerV2_SSV2_B16_16x224.zip" and "has sha256" in capsys.readouterr().err
    assert read_checkpoint(path)[1] == "keras_savedmodel"


@pytest.mark.slow
def test_predict_by_the_shipped_name_with_a_b16_sized_file(tmp_path, monkeypatch):
    """``uniformerv2 predict VIDEO --model ssv2_b16_16x224.clip_keras``: a SavedModel zip of the real entry's
    architecture (Something-Something V2 B/16 16x224, local MHRA, random weights) under the entry's URL on a
    loopback mirror, downloaded, read, loaded into the preset and run; the classes it prints are SSv2's."""
    from videogen import write_video

    torch.manual_seed(5)
    sd = u.export_official_state_dict(u.create_model("ssv2_b16_16x224"))
    release = tmp_path / "mirror" / "github.com" / "innat" / "UniFormerV2" / "releases" / "download" / "v1.1"
    release.mkdir(parents=True)
    write_savedmodel_zip(release / "TFUniFormerV2_SSV2_B16_16x224.zip", sd, crc_limit=sm.CRC_CHECKED_BYTES,
                         compression=zipfile.ZIP_STORED)
    del sd
    clip = write_video(tmp_path / "clip.mp4", 40)
    server = FileServer(tmp_path / "mirror")
    try:
        env = {k: v for k, v in os.environ.items()
               if k not in ("UNIFORMERV2_OFFLINE", "HF_HUB_OFFLINE", "UNIFORMERV2_REQUIRE_DIGEST", "UNIFORMERV2_REGISTRY",
                            "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
        env.update(NO_PROXY="127.0.0.1,localhost", UNIFORMERV2_HOME=str(tmp_path / "home"),
                   UNIFORMERV2_MIRROR=server.url)
        r = subprocess.run([sys.executable, "-m", "uniformerv2", "predict", str(clip), "--model",
                            "ssv2_b16_16x224.clip_keras", "--views", "1x1", "--device", "cpu"],
                           capture_output=True, text=True, timeout=400, env=env)
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    ssv2 = set(load_labels("something_something_v2"))
    ranked = [line.split(None, 2) for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(ranked) == 5 and all(name in ssv2 for _, _, name in ranked), r.stdout
    assert "has sha256" in r.stderr  # no published digest: the first download prints its own
