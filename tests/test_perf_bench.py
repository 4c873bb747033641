"""`uniformerv2 bench` and the benchmark scripts: table rows with real values, the suite's markdown, the
input-pipeline benchmark, the side-by-side with the official code (where its file is given)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uniformerv2 import create_model
from uniformerv2.bench import bench_model, bench_pipeline, pipeline_rates, pipeline_table
from uniformerv2.cli import main
from uniformerv2.errors import UserError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

ROW = re.compile(r"^\| ([^|]+?) \| (\w+)[^|]* \| (\d+) \| ([\w ]+?) \| ([\w-]+) \| ([0-9.]+) \| ([0-9.]+) \|")


def _rows(text):
    return [m.groups() for m in map(ROW.match, text.splitlines()) if m]


def test_bench_cli_prints_a_row_with_positive_throughput(capsys, tmp_path):
    threads = torch.get_num_threads()
    assert main(["bench", "--preset", "tiny_k400_8x64", "--batch-size", "2", "--iters", "1", "--warmup", "1",
                 "--threads", "1", "--out", str(tmp_path / "t.md")]) == 0
    assert torch.get_num_threads() == threads  # no global side effect
    out = capsys.readouterr().out
    assert out.startswith("device: CPU")
    (label, impl, bs, dtype, mode, clips, mem), = _rows(out)
    assert (label, impl, bs, dtype, mode) == ("inference", "ours", "2", "fp32", "none")
    assert float(clips) > 0 and float(mem) > 0
    assert (tmp_path / "t.md").read_text().count("| inference | ours |") == 1

    assert main(["bench", "--preset", "tiny_ssv2_8x64", "--train", "--iters", "1", "--warmup", "1",
                 "--threads", "1", "--grad-ckpt", "2", "--ckpt-policy", "block", "--reference"]) == 0
    (label, impl, *_, clips, _), = _rows(capsys.readouterr().out)
    assert (label, impl) == ("training", "reference") and float(clips) > 0


def test_bench_model_applies_the_variants_it_reports():
    r = bench_model(create_model("tiny_ssv2_8x64"), 1, "fp32", train=True, device="cpu", warmup=0, iters=1,
                    grad_ckpt=2, ckpt_policy="save_attention")
    assert r["variants"] == {"LeanMlp": 4, "CheckpointSaveAttention": 2}
    r = bench_model(create_model("tiny_ssv2_8x64"), 1, "bf16", device="cpu", warmup=0, iters=1)
    assert "InplaceLocalUniBlock" not in r["variants"] and r["variants"]["FoldedLocalMHRA"] == 8  # autocast
    r = bench_model(create_model("tiny_ssv2_8x64"), 1, "fp32", device="cpu", warmup=0, iters=1, optimize=False)
    assert r["variants"] == {}


def test_bench_model_dtype_runs_bf16_weights_without_autocast(capsys):
    model = create_model("tiny_k400_8x64")
    seen = []
    model.head.register_forward_hook(lambda m, i, o: seen.append((o.dtype, torch.is_autocast_enabled("cpu"))))
    r = bench_model(model, 1, "fp32", device="cpu", warmup=1, iters=1, model_dtype="bf16")
    assert r["precision"] == "bf16 weights" and r["clips_per_s"] > 0
    assert r["variants"]["InplaceLocalUniBlock"] == 4
    assert next(model.parameters()).dtype == torch.bfloat16
    assert set(seen) == {(torch.bfloat16, False)}
    with pytest.raises(UserError, match="inference"):
        bench_model(create_model("tiny_k400_8x64"), 1, "bf16", train=True, device="cpu", model_dtype="bf16")
    assert main(["bench", "--preset", "tiny_k400_8x64", "--iters", "1", "--warmup", "1", "--threads", "1",
                 "--model-dtype", "bf16"]) == 0
    (_, impl, _, dtype, mode, clips, _), = _rows(capsys.readouterr().out)
    assert (impl, dtype, mode) == ("ours", "bf16 weights", "none") and float(clips) > 0


def test_bench_cli_rejects_unknown_dpe():
    with pytest.raises(SystemExit):
        main(["bench", "--dpe", "fft"])


def test_suite_markdown_has_every_row():
    from suite import run_suite

    rows = [("inference tiny", "tiny_k400_8x64", 1, False, "fp32", {}),
            ("training tiny", "tiny_k400_8x64", 1, True, "fp32", {"grad_ckpt": 1, "ckpt_policy": "save_attention"})]
    lines = run_suite(rows, compile_modes=("none",), warmup=0, iters=1, echo=lambda _: None)
    assert lines[0].startswith("| workload | impl |")
    parsed = _rows("\n".join(lines))
    assert [r[0] for r in parsed] == ["inference tiny", "training tiny"] and all(float(r[5]) > 0 for r in parsed)
    assert "ckpt 1 save_attention" in lines[-1]
    skipped = run_suite(rows[:1], compile_modes=("none",), budget_s=-1, echo=lambda _: None)
    assert "skipped (time budget)" in skipped[-1]


def test_pipeline_reports_throughput_and_data_wait(tmp_path):
    r = bench_pipeline("tiny_k400_8x64", batch_size=2, workers=0, steps=1, videos=2, seconds=1.0, dtype="fp32",
                       workdir=tmp_path, verbose=False)
    assert r["clips"] == 2 and r["clips_per_s"] > 0 and r["clips_per_core_s"] > 0
    assert 0 < r["data_wait_fraction"] < 1 and (r["files"], r["augment_on"]) == ("prepared", "device")


def test_pipeline_rates_side_by_side(tmp_path):
    """raw / prepared x cpu / device / decode only, one worker process each, in one run; prepared files
    report their PSNR and size."""
    r = pipeline_rates("tiny_k400_8x64", files=2, seconds=1.0, clips=2, batch_size=2, workdir=tmp_path,
                       verbose=False)
    cases = [(x["files"], x["augment_on"]) for x in r["rows"]]
    assert cases == [(f, a) for f in ("raw", "prepared") for a in ("cpu", "device", "decode only")]
    assert all(x["clips"] == 2 and x["clips_per_core_s"] > 0 for x in r["rows"])
    assert all((x["device_ms"] is not None) == (x["augment_on"] == "device") for x in r["rows"])
    assert r["psnr"] > 40 and r["size_ratio"] > 0 and (tmp_path / "prepared").is_dir()
    table = pipeline_table(r)
    assert table[0].startswith("| files | augmentation |") and len(table) == 8
    two = pipeline_rates("tiny_k400_8x64", files=2, seconds=1.0, clips=2, batch_size=2, workdir=tmp_path,
                         verbose=False, cases=[("raw", "cpu"), ("prepared", "device")])
    assert [(x["files"], x["augment_on"]) for x in two["rows"]] == [("raw", "cpu"), ("prepared", "device")]
    with pytest.raises(UserError, match="cases must be"):
        pipeline_rates("tiny_k400_8x64", workdir=tmp_path, cases=[("raw", "gpu")])


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


def test_inference_pipeline_bench_prints_ratios(capsys, tmp_path):
    """`bench --inference-pipeline`: one row per worker count with positive rates, 1.00x for 0 workers; the
    per-core decode rate of recipes without building their models."""
    from uniformerv2.inference.benchmark import bench_inference_pipeline

    r = bench_inference_pipeline("uniformerv2_nano", workers=(0, 1), videos=3, seconds=1.0, rounds=1,
                                 workdir=tmp_path, verbose=False)
    assert [x["workers"] for x in r["rows"]] == [0, 1] and r["rows"][0]["ratio"] == 1.0
    assert all(x["videos_per_s"] > 0 and 0 <= x["data_wait"] <= 1 for x in r["rows"])
    assert r["decode_videos_per_core_s"] > 0 and r["cores_for_model"] > 0 and r["views"] == "1x1"
    assert main(["bench", "--inference-pipeline", "--decode-presets", "tiny_k400_8x64", "tiny_ssv2_8x64",
                 "--seconds", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| tiny_")]
    assert [line.split(" | ")[1] for line in rows] == ["1x1", "1x1"] and all(float(line.split(" | ")[-1][:-2]) > 0 for line in rows)
