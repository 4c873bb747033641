"""ONNX and torch.export exports of a small model: parity with eager fp32, dynamic batch, metadata."""
import json
import re

import numpy as np
import pytest
import torch

import uniformerv2
from uniformerv2.cli import main
from uniformerv2.inference.export import ExportReport, export_onnx, export_torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A nano model with local MHRA and temporal downsampling (the Something-Something design), random weights."""
    torch.manual_seed(0)
    m = uniformerv2.create_model("uniformerv2_nano", num_frames=4, num_classes=7, temporal_downsample=True,
                                 local_mhra="double", labels=[f"c{i}" for i in range(7)])
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
    return m.save_pretrained(tmp_path_factory.mktemp("nano") / "model")


def eager(model_dir):
    return uniformerv2.from_pretrained(model_dir).eval()


def inputs(b, seed=123):
    return torch.randn(b, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed + b))


def test_onnx_cli_verifies_and_matches(model_dir, tmp_path, capsys):
    out = tmp_path / "nano.onnx"
    assert main(["export", "onnx", str(model_dir), str(out)]) == 0
    line = capsys.readouterr().out
    diff = float(re.search(r"max abs diff vs eager fp32 on batches 1/3: (\S+)", line).group(1))
    assert 0 <= diff <= 1e-4 and "OK" in line
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = eager(model_dir)
    for b in (2, 5):  # other batch sizes than the checks: the batch dimension is dynamic
        x = inputs(b)
        got = sess.run(["logits"], {"video": x.numpy()})[0]
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == (b, 7)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["uniformerv2.labels"]) == [f"c{i}" for i in range(7)]
    assert json.loads(meta["uniformerv2.data"])["mean"] == [0.45] * 3
    assert json.loads(meta["uniformerv2.model"])["num_frames"] == 4


def test_torch_export_matches(model_dir, tmp_path):
    report = export_torch(eager(model_dir), tmp_path / "nano.pt2")
    assert report.ok and report.max_abs_diff <= 1e-4
    extra = {"uniformerv2.json": ""}
    program = torch.export.load(str(tmp_path / "nano.pt2"), extra_files=extra).module()
    assert json.loads(json.loads(extra["uniformerv2.json"])["uniformerv2.labels"])[0] == "c0"
    model = eager(model_dir)
    with torch.no_grad():
        for b in (1, 4):
            x = inputs(b)
            np.testing.assert_allclose(program(x).numpy(), model(x).numpy(), atol=1e-5, rtol=0)


def test_legacy_onnx_exporter_and_verdict(tmp_path):
    """The deprecated TorchScript exporter, on the Kinetics design (global UniBlocks only)."""
    model = uniformerv2.create_model("uniformerv2_nano", num_frames=4, num_classes=5)
    report = export_onnx(model, tmp_path / "n.onnx", legacy=True)
    assert "torchscript" in report.kind and report.ok and report.max_abs_diff <= 1e-4
    bad = ExportReport(report.path, report.kind, max_abs_diff=2e-4, tolerance=1e-4)
    assert not bad.ok and bad.summary().endswith("FAILED")
