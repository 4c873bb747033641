"""The onnxruntime backend of the engine (fp32 and int8) against the torch backend: with a fine-tuned tiny model
on the shared real clips, the same classes, probabilities within the documented tolerances (docs/inference.md),
the export cached and reused, a corrupt cached file rebuilt; int8's accuracy cost on held-out videos; a one-line
error when ONNX Runtime is missing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import uniformerv2
from uniformerv2.cli import main
from uniformerv2.inference import VideoClassifier
from uniformerv2.inference import runtime

if not os.environ.get("CI"):   # CI installs the dev extra: there a missing runtime fails the import below
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'uniformerv2[onnx]'")
    pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'uniformerv2[onnx]'")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402,F401

FP32_TOL = 1e-5    # probabilities, onnxruntime fp32 vs torch (docs/inference.md)
INT8_TOL = 0.05    # probabilities, onnxruntime int8 vs torch
NUM_CLASSES = 6
TUNED_CLASSES = 4
TUNE_EPOCHS = 3
HELD_PER_CLASS = 3
PREDICT_ARGS = ("--device", "cpu", "--json", "--quiet", "--top-k", str(TUNED_CLASSES), "--workers", "0")  # all classes


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A nano model with local MHRA and temporal downsampling, random weights with a sharp head: its classes
    are far enough apart that the top-3 order is a real check."""
    torch.manual_seed(3)
    m = uniformerv2.create_model("uniformerv2_nano", num_frames=4, num_classes=NUM_CLASSES, temporal_downsample=True,
                                 local_mhra="double", labels=[f"c{i}" for i in range(NUM_CLASSES)])
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
        m.head.fc.weight.mul_(8.0)
        m.head.fc.bias.copy_(torch.linspace(-1.0, 1.0, NUM_CLASSES))
    return m.save_pretrained(tmp_path_factory.mktemp("nano") / "model")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A fine-tuned tiny model: a nano video model of 7 other classes fine-tuned for a few seconds (``finetune``,
    the Python API of ``uniformerv2 finetune``) on class folders of coloured videos; and a labelled list of
    held-out videos of its 4 classes."""
    import contextlib
    import io

    from test_finetune import COLOURS, QUICK, colour_videos

    root = tmp_path_factory.mktemp("tuned")
    torch.manual_seed(0)
    start = uniformerv2.create_model("uniformerv2_nano", num_classes=7, labels=[f"other {k}" for k in range(7)])
    start = start.save_pretrained(root / "start")
    data = colour_videos(root / "data", per_class=4)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = uniformerv2.finetune(data, root / "run", weights=str(start), epochs=TUNE_EPOCHS, batch_size=8,
                                       lr=1e-2, progress=False, overrides=QUICK, workers=0)
    held = colour_videos(root / "held", per_class=HELD_PER_CLASS, seed=1)
    listed = root / "held.csv"
    listed.write_text("".join(f"{held / c}/{k:02d}.mp4,{c}\n" for c in COLOURS for k in range(HELD_PER_CLASS)))
    return Path(summary["model_dir"]), listed


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIFORMERV2_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "onnx"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache folder for the tests that do not count exports (each model is exported once)."""
    return tmp_path_factory.mktemp("home") / "onnx"   # $UNIFORMERV2_HOME/onnx for the commands run in new processes


def predict_all(capsys, videos, model_dir, *extra):
    """Every class of every video, as ``predict --json`` ranks them (the command's entry point, in process)."""
    assert main(["predict", *map(str, videos), "--model", str(model_dir), *PREDICT_ARGS, *extra]) == 0
    return [v["top_k"] for v in json.loads(capsys.readouterr().out)]


def assert_same_ranking(got, want, tol):
    for g, w in zip(got, want, strict=True):
        assert [s["label"] for s in g] == [s["label"] for s in w]
        np.testing.assert_allclose([s["prob"] for s in g], [s["prob"] for s in w], atol=tol, rtol=0)


def onnx_files(cache):
    return sorted(p for p in cache.glob("*.onnx"))


def stamp(path):
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def test_predict_backends_agree_and_cache_is_reused(shared_dir, tuned, cache, capsys):
    """The fine-tuned tiny model on the shared real clips: the classes of ``predict --backend onnxruntime`` (and
    ``--quantize int8``) are torch's, in the same order, probabilities within the documented tolerances; later
    calls (in this process and in a new one) reuse the cached files; corrupt ones are rebuilt."""
    model_dir, _ = tuned
    videos = [shared_dir / "videos" / "test.mp4", shared_dir / "videos" / "test.avi"]
    want = predict_all(capsys, videos, model_dir)
    for w in want:   # a strict ranking of all classes: each step between neighbours is far above the fp32 tolerance
        probs = [s["prob"] for s in w]
        assert len(w) == TUNED_CLASSES and all(a - b > 100 * FP32_TOL for a, b in zip(probs, probs[1:])), probs
    before = runtime.exports
    got = predict_all(capsys, videos, model_dir, "--backend", "onnxruntime")
    assert runtime.exports == before + 1                     # exported once
    (fp32,) = onnx_files(cache)
    assert_same_ranking(got, want, FP32_TOL)

    first = stamp(fp32)
    again = predict_all(capsys, videos, model_dir, "--backend", "onnxruntime")
    assert runtime.exports == before + 1 and stamp(fp32) == first   # reused: no export, the same file
    assert again == got

    q = predict_all(capsys, videos, model_dir, "--backend", "onnxruntime", "--quantize", "int8")
    assert runtime.exports == before + 2                     # the int8 file, from the cached fp32 one
    assert stamp(fp32) == first
    assert_same_ranking(q, want, INT8_TOL)
    int8 = next(p for p in onnx_files(cache) if p != fp32)
    stamp8, notes = stamp(int8), {p: stamp(p) for p in cache.glob("*.json")}

    # the command as a user runs it, in a new process: the cached int8 file is used as it is
    r = subprocess.run([sys.executable, "-m", "uniformerv2", "predict", *map(str, videos), "--model", str(model_dir),
                        "--backend", "onnxruntime", "--quantize", "int8", *PREDICT_ARGS], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "UNIFORMERV2_HOME": str(cache.parent)})
    assert r.returncode == 0, r.stderr
    assert [v["top_k"] for v in json.loads(r.stdout)] == q
    assert stamp(fp32) == first and stamp(int8) == stamp8 and {p: stamp(p) for p in cache.glob("*.json")} == notes
    assert sorted(cache.iterdir()) == sorted([fp32, int8, *notes, *cache.glob(".*.lock")])

    # a corrupt file (same size, other bytes) is detected and exported again; so is a file without its note
    data = bytearray(fp32.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    fp32.write_bytes(bytes(data))
    assert predict_all(capsys, videos, model_dir, "--backend", "onnxruntime") == got
    assert runtime.exports == before + 3
    note = json.loads((cache / (fp32.name + ".json")).read_text())
    assert note["sha256"] == runtime.file_sha256(fp32) and note["key"]["quantize"] == "none"
    (cache / (int8.name + ".json")).write_text("{")
    assert predict_all(capsys, videos, model_dir, "--backend", "onnxruntime", "--quantize", "int8") == q
    assert runtime.exports == before + 4


def test_int8_accuracy_cost_on_the_tuned_model(tuned, shared_cache, capsys):
    """The accuracy cost of each backend on held-out videos of the fine-tuned tiny model's classes (printed:
    ``pytest -s`` shows the table docs/benchmarks.md quotes): int8 top-1 within 1 point of fp32, the same top-1
    on every video."""
    from uniformerv2.bench.backends import accuracy_table, backend_accuracy

    model_dir, held = tuned
    r = backend_accuracy(model_dir, held, cache=shared_cache)
    b = r["backends"]
    with capsys.disabled():
        print(f"\nfine-tuned tiny model, {r['videos']} held-out videos\n" + "\n".join(accuracy_table(r)))
    assert r["videos"] == 4 * HELD_PER_CLASS and b["torch"]["top1"] >= 75   # it learned the task (chance: 25)
    assert b["onnxruntime"]["top1"] == b["torch"]["top1"] and b["onnxruntime"]["max_prob_diff"] < FP32_TOL
    assert abs(b["onnxruntime int8"]["top1"] - b["onnxruntime"]["top1"]) <= 1.0
    assert b["onnxruntime int8"]["agreement_with_fp32"] == 100.0 and b["onnxruntime int8"]["max_prob_diff"] < INT8_TOL


def test_api_outputs_match_torch(shared_dir, model_dir, shared_cache):
    """Every view's features, logits and probabilities through ``VideoClassifier(..., backend=...)``."""
    video = str(shared_dir / "videos" / "test.mp4")
    model = uniformerv2.from_pretrained(model_dir)
    ref = VideoClassifier(model, device="cpu")
    fast = VideoClassifier(uniformerv2.from_pretrained(model_dir), backend="onnxruntime", cache=shared_cache)
    q8 = VideoClassifier(uniformerv2.from_pretrained(model_dir), backend="onnxruntime", quantize="int8",
                         cache=shared_cache)
    assert type(fast.engine).__name__ == "OnnxRuntimeEngine" and fast.device.type == "cpu"
    a, b, c = (clf.predict(video, views="2x3") for clf in (ref, fast, q8))
    np.testing.assert_allclose(b.view_probs, a.view_probs, atol=FP32_TOL, rtol=0)
    np.testing.assert_allclose(c.view_probs, a.view_probs, atol=INT8_TOL, rtol=0)
    assert [s.label for s in c.top_k[:3]] == [s.label for s in a.top_k[:3]]
    fa, fb = ref.extract_features(video, views="2x1"), fast.extract_features(video, views="2x1")
    assert fb.view_features.shape == fa.view_features.shape == (2, 32)
    np.testing.assert_allclose(fb.view_features, fa.view_features, atol=1e-4, rtol=0)


def test_exported_graph(model_dir, shared_cache):
    """Both outputs in the ONNX file; int8 quantizes the linear layers and keeps the head in fp32."""
    model = uniformerv2.from_pretrained(model_dir)
    fp32, int8 = runtime.onnx_file(model, "none", shared_cache), runtime.onnx_file(model, "int8", shared_cache)
    assert [o.name for o in onnx.load(str(fp32)).graph.output] == ["logits", "features"]
    graph = onnx.load(str(int8)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulInteger") >= 4 and "DynamicQuantizeLinear" in ops
    head = runtime.head_nodes(graph)
    assert any(n.op_type in ("MatMul", "Gemm") for n in graph.node if n.name in head)
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= ops.count("MatMulInteger")   # an int8 weight per quantized linear layer


def test_bad_choices_and_missing_runtime(model_dir, cache, tmp_path, capsys, monkeypatch):
    video = tmp_path / "v.mp4"   # never read: each call stops before decoding
    base = ["predict", str(video), "--model", str(model_dir), "--device", "cpu", "--quiet"]
    assert main([*base, "--quantize", "int8"]) == 2
    assert "needs the onnxruntime backend" in capsys.readouterr().err
    assert main([*base, "--backend", "onnxruntime", "--dtype", "bf16"]) == 2
    assert "fp32" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)    # as if it were not installed
    assert main([*base, "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'uniformerv2[onnx]'" in err and "onnxruntime" in err
    assert not os.path.exists(cache)


def test_bench_backends(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "backends", "--preset", "uniformerv2_nano", "--iters", "2", "--warmup", "0", "--quiet",
                 "--cache", str(tmp_path / "onnx"), "-o", str(out)]) == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())["result"]["rows"]
    assert [r["backend"] for r in rows] == ["torch", "onnxruntime", "onnxruntime int8"]
    assert rows[0]["ratio"] == 1.0 and rows[0]["max_logit_diff"] == 0.0
    assert rows[1]["max_logit_diff"] < 1e-4 and rows[1]["top1_agreement"] == 1.0
    assert all(r["latency_s"] > 0 and len(r["times_s"]) == 2 for r in rows)
    assert "| onnxruntime int8 |" in table and len(list((tmp_path / "onnx").glob("*.onnx"))) == 2


def test_bench_backends_accuracy_on_a_labelled_list(model_dir, shared_cache, tmp_path, capsys):
    """--list: each backend's top-1 on a labelled list, recomputed here from predict's own classes."""
    from videogen import write_video

    videos = [write_video(tmp_path / f"{i}.mp4", 10 + 3 * i, width=40, height=32, fps=8) for i in range(3)]
    (tmp_path / "test.csv").write_text("".join(f"{v},c{i}\n" for i, v in enumerate(videos)))
    out = tmp_path / "acc.json"
    assert main(["bench", "backends", "--model", str(model_dir), "--list", str(tmp_path / "test.csv"), "--cache",
                 str(shared_cache), "--quiet", "-o", str(out)]) == 0
    r = json.loads(out.read_text())["result"]
    clf = uniformerv2.VideoClassifier.from_pretrained(model_dir, device="cpu")
    want = 100 * sum(clf.predict(str(v)).top_k[0].index == i for i, v in enumerate(videos)) / 3
    assert r["videos"] == 3 and r["backends"]["torch"]["top1"] == pytest.approx(want)
    assert r["backends"]["torch"]["max_prob_diff"] == 0.0
    assert r["backends"]["onnxruntime"]["max_prob_diff"] < FP32_TOL
    assert "| onnxruntime int8 |" in capsys.readouterr().out


def test_bench_backends_predict_command(tuned, shared_dir, shared_cache, monkeypatch, capsys):
    """``bench backends --predict``'s runs: the whole predict command in a new process per run, its classes read
    back (here int8 alone, the cached file of the accuracy test reused: two processes)."""
    from uniformerv2.bench.backends import bench_predict

    monkeypatch.setenv("UNIFORMERV2_HOME", str(shared_cache.parent))
    model_dir, _ = tuned
    videos = [shared_dir / "videos" / "test.mp4", shared_dir / "videos" / "test.avi"]
    want = [[s["label"] for s in v] for v in predict_all(capsys, videos, model_dir)]
    r = bench_predict(model_dir, videos, cases=[("onnxruntime", "int8")], rounds=1)
    (row,) = r["rows"]
    assert row["backend"] == "onnxruntime int8" and len(row["times_s"]) == 1 and row["wall_s"] > 0
    assert row["top1"] == [w[0] for w in want] and row["ratio"] == 1.0 and row["max_prob_diff"] == 0.0
    assert row["command"].endswith("--backend onnxruntime --quantize int8")
    assert len(list(shared_cache.glob("*.onnx"))) >= 2
