"""`uniformerv2 bench MODE` and the benchmark scripts: one subcommand per mode (the parser keeps them apart and
rejects the old flags), JSON results whose fields agree with each other and with what was asked, the trainer's
own step, the default input workers against explicit counts, the suite's markdown and the official side by
side (where its file is given)."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uniformerv2 import create_model
from uniformerv2.bench.inference import bench_inference, compare
from uniformerv2.bench.model import bench_model, training_step
from uniformerv2.bench.pipeline import bench_pipeline, pipeline_rates, pipeline_table
from uniformerv2.cli import build_parser, main
from uniformerv2.errors import UserError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
MODES = ["model", "pipeline", "prepare", "inference", "decode", "views", "memory", "recipes", "feed-demo", "backends",
         "explain", "serve", "live"]


def _exit_code(argv) -> int:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    return e.value.code


# ------------------------------------------------------------------------------------------------- the parser
def test_every_mode_is_a_subcommand_with_an_output_option():
    parser = build_parser()
    for mode in MODES:
        extra = {"views": ["--preset", "tiny_k400_8x64"], "feed-demo": ["--workdir", "w"],
                 "explain": ["--model", "m", "--list", "l.csv"]}.get(mode, [])
        args = parser.parse_args(["bench", mode, "-o", "r.json", *extra])
        assert (args.mode, args.output) == (mode, "r.json")
    assert _exit_code(["bench"]) == 2                                   # a mode is required


def test_modes_exclude_each_other_and_old_flags_exit_2(capsys):
    assert _exit_code(["bench", "pipeline", "prepare"]) == 2           # one mode per call, by construction
    assert _exit_code(["bench", "model", "--pipeline"]) == 2
    for old in (["--pipeline"], ["--prepare"], ["--data"], ["--inference-pipeline"], ["--preset", "tiny_k400_8x64"],
                ["model", "--model-dtype", "bf16"], ["model", "--compile-mode", "full"],
                ["model", "--compile"], ["inference", "--decode-presets", "x"],
                ["inference", "--batch-size", "1"], ["model", "--batch-size", "0"], ["pipeline", "--clips", "-1"],
                ["model", "--dpe", "fft"], ["prepare", "--preset", "veryfast"]):
        assert _exit_code(["bench", *old]) == 2, old
    assert _exit_code(["bench", "inference", "--preset", "tiny_k400_8x64", "--model", "dir"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_cast_dtype_in_training_or_a_missing_device_is_refused_before_anything_runs(capsys):
    assert main(["bench", "model", "--preset", "tiny_k400_8x64", "--train", "--dtype", "bf16"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--amp bf16" in err and len(err.strip().splitlines()) == 1
    missing = f"cuda:{torch.cuda.device_count()}"                     # one past the last GPU (cuda:0 on a CPU)
    for mode in (["model"], ["pipeline"], ["inference"]):
        assert main(["bench", *mode, "--device", missing]) == 2
        out, err = capsys.readouterr()
        assert out == "" and f"device {missing} is not available" in err


# ------------------------------------------------------------------------------------------------- bench model
def test_bench_model_cli_json_agrees_with_its_table(capsys, tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "m.json"
    assert main(["bench", "model", "--preset", "tiny_k400_8x64", "--batch-size", "2", "--iters", "2", "--warmup", "1",
                 "--threads", "1", "-o", str(out)]) == 0
    assert torch.get_num_threads() == threads  # no global side effect
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    r = doc["result"]
    assert doc["benchmark"] == "model" and doc["options"]["batch_size"] == 2 and doc["environment"]["threads"] == 1
    assert (r["workload"], r["batch_size"], r["dtype"], r["amp"], r["compile"], r["iters"], r["warmup"]) == \
        ("inference", 2, "fp32", "none", "none", 2, 1)
    assert r["clips_per_s"] == pytest.approx(2 * 1000 / r["ms_per_batch"])
    assert r["variants"] == {"InplaceLocalUniBlock": 4} and r["optimized"] is True
    row = f"| inference | ours | 2 | fp32 | none | {r['clips_per_s']:.1f} | {r['peak_mem_mb'] / 1024:.2f} |  |"
    assert printed.startswith("device: CPU") and row in printed.splitlines()


def test_the_training_step_is_the_trainers():
    """bench's step equals engine.train.train_step run by hand on a copy: the same weights to the bit."""
    from uniformerv2.bench.model import make_batch, train_state
    from uniformerv2.engine.train import train_step

    torch.manual_seed(0)
    model = create_model("tiny_k400_8x64").train()
    twin, before = copy.deepcopy(model), copy.deepcopy(model.state_dict())
    batch = make_batch(model, 2, torch.device("cpu"))
    step = training_step(model, model, batch, None, torch.device("cpu"))
    torch.manual_seed(1)  # drop path draws
    result = step()
    assert result.count == 2 and result.ok and step.state.step == 1
    state = train_state(twin, torch.device("cpu"))
    labels = torch.zeros(2, dtype=torch.long)
    torch.manual_seed(1)
    twin_result = train_step(state, iter([{"video": batch, "label": labels}]), forward=twin, device=torch.device("cpu"))
    assert (twin_result.loss, twin_result.grad_norm) == (result.loss, result.grad_norm)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(model.state_dict()["head.fc.weight"], before["head.fc.weight"])  # it trained


def test_bench_model_applies_the_variants_it_reports():
    r = bench_model(create_model("tiny_ssv2_8x64"), 1, train=True, device="cpu", warmup=0, iters=1,
                    grad_ckpt=2, ckpt_policy="save_attention")
    assert r["variants"] == {"LeanMlp": 4, "CheckpointSaveAttention": 2} and r["workload"] == "training"
    r = bench_model(create_model("tiny_ssv2_8x64"), 1, "bf16", device="cpu", warmup=0, iters=1)
    assert "InplaceLocalUniBlock" not in r["variants"] and r["variants"]["FoldedLocalMHRA"] == 8  # autocast
    assert r["precision"] == "bf16 autocast"
    r = bench_model(create_model("tiny_ssv2_8x64"), 1, device="cpu", warmup=0, iters=1, optimize=False)
    assert r["variants"] == {} and r["optimized"] is False


def test_dtype_casts_the_weights_and_amp_is_autocast():
    seen = []
    model = create_model("tiny_k400_8x64")
    model.head.register_forward_hook(lambda m, i, o: seen.append((o.dtype, torch.is_autocast_enabled("cpu"))))
    r = bench_model(model, 1, device="cpu", warmup=1, iters=1, dtype="bf16")
    assert r["precision"] == "bf16 weights" and r["variants"]["InplaceLocalUniBlock"] == 4
    assert next(model.parameters()).dtype == torch.bfloat16 and set(seen) == {(torch.bfloat16, False)}
    seen.clear()
    model = create_model("tiny_k400_8x64")
    model.head.register_forward_hook(lambda m, i, o: seen.append((o.dtype, torch.is_autocast_enabled("cpu"))))
    bench_model(model, 1, "bf16", device="cpu", warmup=1, iters=1)
    assert next(model.parameters()).dtype == torch.float32 and set(seen) == {(torch.bfloat16, True)}
    with pytest.raises(UserError, match="inference"):
        bench_model(create_model("tiny_k400_8x64"), 1, train=True, device="cpu", dtype="bf16")
    with pytest.raises(UserError, match="device"):
        bench_model(create_model("tiny_k400_8x64"), 1, device="cuda:7" if torch.cuda.is_available() else "cuda")


# ------------------------------------------------------------------------------------------------- pipelines
def test_pipeline_end_to_end_counts_the_clips_it_trained_on(tmp_path):
    r = bench_pipeline("tiny_k400_8x64", batch_size=1, workers=0, steps=2, videos=2, seconds=1.0, amp=None,
                       workdir=tmp_path, verbose=False)
    assert r["clips"] == 2 * 1 and (r["steps"], r["batch_size"], r["workers"]) == (2, 1, 0)
    assert r["clips_per_s"] == pytest.approx(r["clips"] / r["seconds"])
    assert r["data_wait_fraction"] == pytest.approx(r["data_wait_s"] / r["seconds"])
    assert 0 < r["data_wait_s"] < r["seconds"]
    assert r["clips_per_core_s"] == pytest.approx(r["clips"] / r["worker_cpu_s"])
    assert (r["files"], r["augment_on"], r["amp"]) == ("prepared", "device", "none")


def test_pipeline_rates_side_by_side(tmp_path):
    """raw / prepared x cpu / device / decode only, one worker process each, in one run; prepared files
    report their PSNR and size."""
    r = pipeline_rates("tiny_k400_8x64", files=2, seconds=1.0, clips=2, batch_size=2, workdir=tmp_path,
                       verbose=False)
    cases = [(x["files"], x["augment_on"]) for x in r["rows"]]
    assert cases == [(f, a) for f in ("raw", "prepared") for a in ("cpu", "device", "decode only")]
    for x in r["rows"]:
        assert x["clips"] == 2 and x["clips_per_core_s"] == pytest.approx(x["clips"] / x["cpu_s"])
        assert x["worker_ms"] == pytest.approx(1e3 * x["cpu_s"] / x["clips"])
        assert (x["device_ms"] is not None) == (x["augment_on"] == "device")
    assert r["psnr"] > 40 and r["size_ratio"] > 1 and (tmp_path / "prepared").is_dir()
    table = pipeline_table(r)
    assert table[0].startswith("| files | augmentation |") and len(table) == 8
    two = pipeline_rates("tiny_k400_8x64", files=2, seconds=1.0, clips=2, batch_size=2, workdir=tmp_path,
                         verbose=False, cases=[("raw", "cpu"), ("prepared", "device")])
    assert [(x["files"], x["augment_on"]) for x in two["rows"]] == [("raw", "cpu"), ("prepared", "device")]
    with pytest.raises(UserError, match="cases must be"):
        pipeline_rates("tiny_k400_8x64", workdir=tmp_path, cases=[("raw", "gpu")])


def test_bench_prepare_cli_rows_per_interval(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["bench", "prepare", "--intervals", "8", "--frames", "8", "--files", "1", "--seconds", "1",
                 "--draws", "1", "-o", str(out)]) == 0
    r = json.loads(out.read_text())["result"]
    assert [x["keyframe_interval"] for x in r["rows"]] == ["source", 8] and r["files"] == 1
    source, prepared = r["rows"]
    assert source["size_ratio"] == 1.0 and source["psnr"] is None and prepared["psnr"] > 35
    assert prepared["size_ratio"] == pytest.approx(prepared["bytes"] / source["bytes"])
    assert set(source["read_ms"]) == {"8"} and all(v > 0 for x in r["rows"] for v in x["read_ms"].values())
    assert "| 8 |" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------- inference
def test_compare_takes_medians_and_the_fastest_explicit_setting():
    c = compare({"default": [1.0, 1.2, 1.1], "0": [2.0, 2.0, 2.0], "1": [1.0, 1.0, 1.2]})
    assert c["median_s"] == {"default": 1.1, "0": 2.0, "1": 1.0} and c["best_explicit"] == "1"
    assert c["default_over_best"] == pytest.approx(1.1) and c["default_over_best_min"] == pytest.approx(1.0)
    assert compare({"default": [3.0, 1.0]})["median_s"] == {"default": 2.0}


def test_bench_inference_default_against_explicit_workers(tmp_path):
    """Every setting ran every round on every video; the ratio is the one of the raw seconds."""
    r = bench_inference("uniformerv2_nano", workers=(0, 1), videos=3, seconds=1.0, rounds=2, workdir=tmp_path,
                        verbose=False)
    assert r["views"] == "1x1" and r["rounds"] == 2 and r["explicit_workers"] == [0, 1]
    assert set(r["cases"]) == {"one", "folder"} and len(list((tmp_path / "folder").iterdir())) == 3
    for case, n in (("one", 1), ("folder", 3)):
        c = r["cases"][case]
        assert c["videos"] == n and [row["workers"] for row in c["rows"]] == [None, 0, 1]
        for row in c["rows"]:
            assert len(row["seconds"]) == 2 and row["videos"] == 2 * n and row["failed"] == 0
            assert row["videos_per_s"] == pytest.approx(2 * n / sum(row["seconds"]))
            assert 0 <= row["data_wait"] <= 1
        assert c == {**c, **compare({("default" if row["workers"] is None else str(row["workers"])): row["seconds"]
                                     for row in c["rows"]})}
        assert c["default_over_best"] == pytest.approx(c["median_s"]["default"] / c["median_s"][c["best_explicit"]])
    with pytest.raises(UserError, match="distinct"):
        bench_inference("uniformerv2_nano", workers=(1, 1), workdir=tmp_path)
    with pytest.raises(UserError, match="no such video"):
        bench_inference("uniformerv2_nano", cases=["one"], video=tmp_path / "missing.mp4", workdir=tmp_path)


def test_bench_inference_cli_times_the_predict_command(tmp_path, capsys):
    out = tmp_path / "i.json"
    assert main(["bench", "inference", "--preset", "uniformerv2_nano", "--worker-counts", "0", "--cases", "one",
                 "--rounds", "1", "--seconds", "1", "--command", "--workdir", str(tmp_path / "w"), "-o", str(out),
                 "--quiet"]) == 0
    r = json.loads(out.read_text())["result"]
    assert list(r["cases"]) == ["one"] and r["cases"]["one"]["best_explicit"] == "0"
    cmd = r["command"]
    assert cmd["argv"][:2] == ["uniformerv2", "predict"] and "--quiet" in cmd["argv"]
    assert set(cmd["seconds"]) == {"default", "0"} and all(len(v) == 1 and v[0] > 0 for v in cmd["seconds"].values())
    assert cmd["default_over_best"] == pytest.approx(cmd["seconds"]["default"][0] / cmd["seconds"]["0"][0])
    assert (tmp_path / "w" / "model" / "config.json").is_file()
    printed, err = capsys.readouterr()
    assert "default / best explicit (0 workers)" in printed and "as a subprocess" in printed
    assert err.splitlines() == [f"wrote {out}"]                          # --quiet: no progress lines


def test_bench_views_per_core_decode_rate(tmp_path, capsys):
    out = tmp_path / "v.json"
    assert main(["bench", "views", "--preset", "tiny_k400_8x64", "tiny_ssv2_8x64", "--videos", "1", "--seconds", "1",
                 "-o", str(out)]) == 0
    rows = json.loads(out.read_text())["result"]["rows"]
    assert [(x["preset"], x["views"], x["frames"]) for x in rows] == [("tiny_k400_8x64", "1x1", 8),
                                                                      ("tiny_ssv2_8x64", "1x1", 8)]
    assert all(x["videos_per_core_s"] > 0 for x in rows)
    assert sum(line.startswith("| tiny_") for line in capsys.readouterr().out.splitlines()) == 2


def test_bench_memory_one_process_per_variant():
    from uniformerv2.bench.memory import bench_memory

    r = bench_memory("tiny_k400_8x64", 1, variants=["lean MLP, checkpoint all: block"], verbose=False)
    (row,) = r["rows"]
    assert (row["checkpointed_blocks"], row["policy"], row["lean_mlp"]) == (r["depth"], "block", True)
    assert row["extra_peak_mb"] > 0 and row["cpu_s"] > 0
    with pytest.raises(UserError, match="variants must be"):
        bench_memory("tiny_k400_8x64", 1, variants=["nope"])


# ------------------------------------------------------------------------------------------------- benchmarks/
def test_suite_markdown_has_every_row():
    from suite import run_suite

    rows = [("inference tiny", "tiny_k400_8x64", 1, False, "fp32", {}),
            ("training tiny", "tiny_k400_8x64", 1, True, "fp32", {"grad_ckpt": 1, "ckpt_policy": "save_attention"})]
    lines = run_suite(rows, compile_modes=("none",), warmup=0, iters=1, echo=lambda _: None)
    assert lines[0].startswith("| workload | impl |")
    cells = [line.split(" | ") for line in lines[1:] if line.startswith("| ")]
    assert [c[0][2:] for c in cells] == ["inference tiny", "training tiny"]
    assert [c[1] for c in cells] == ["ours", "ours (ckpt 1 save_attention)"] and all(float(c[5]) > 0 for c in cells)
    assert "ckpt 1 save_attention" in lines[-1]
    skipped = run_suite(rows[:1], compile_modes=("none",), budget_s=-1, echo=lambda _: None)
    assert "skipped (time budget)" in skipped[-1]


def test_gpu_suite_dry_run_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--dry-run", "--skip",
                          "compiled,cudagraphs,pipeline", "--out", str(tmp_path / "t.md")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (tmp_path / "t.md").read_text()
    assert "| inference B/16 8x224 | 2 | bf16 | ours | none |" in table and "failed" not in table


@pytest.mark.skipif(not os.environ.get("UNIFORMERV2_OFFICIAL"),
                    reason="set UNIFORMERV2_OFFICIAL to the official uniformerv2_model.py to compare with it")
def test_side_by_side_with_official_code():
    from official import compare_on_cpu

    r = compare_on_cpu(os.environ["UNIFORMERV2_OFFICIAL"], "tiny_ssv2_8x64", iters=1)
    assert r["optimized_max_abs_logit_diff"] < 1e-4 and r["reference_max_abs_logit_diff"] < 1e-4
    assert r["optimized_ms"] > 0 and r["official_ms"] > 0


@pytest.mark.skipif(not os.environ.get("UNIFORMERV2_OFFICIAL"),
                    reason="set UNIFORMERV2_OFFICIAL to the official uniformerv2_model.py to compare with it")
def test_side_by_side_with_official_code_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from official import compare_on_cpu, engine_batch

    assert engine_batch("k400_b16_8x224") == 12 and engine_batch("ssv2_b16_16x224") == 3   # one video's views
    r = compare_on_cpu(os.environ["UNIFORMERV2_OFFICIAL"], "tiny_ssv2_8x64", batch_size=2, iters=1,
                       sides=["official", "onnxruntime", "int8"], cache=tmp_path)
    assert r["sides"] == ["official", "onnxruntime", "int8"] and len(list(tmp_path.glob("*.onnx"))) == 2
    assert r["onnxruntime_max_abs_logit_diff"] < 1e-4 and 1e-4 < r["int8_max_abs_logit_diff"] < 0.5
    assert r["int8_views_per_s"] > 0 and r["int8_latency_ratio"] > 0
