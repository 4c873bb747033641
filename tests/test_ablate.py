"""`uniformerv2 ablate`, reduced: the paper's studies as variants of the recipe's model, a real components study
on a tiny synthetic dataset that is killed mid-way and resumed, and what its table reports."""
import json
import subprocess
import sys
import time

import pytest
import torch

import uniformerv2 as u
from uniformerv2 import synth
from uniformerv2.engine import load_config
from uniformerv2.engine.ablate import (base_model, count_flops, markdown, plot, plot_each_study, study_variants,
                                      synthetic_recipe)

# Every variant trains one epoch of 16 videos (2 steps) at 32 px: a few seconds each on 2 cores.
TINY = ["model.options.img_size=32", "data.num_workers=0", "eval.num_workers=0"]
PARTS = ["none", "global", "local", "local+global", "local+global+tdown"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    synth.generate(root, classes=["moving left", "moving right"], videos_per_class=12, workers=1, progress=False)
    return root


def test_studies_mirror_the_paper_tables(tiny_data):
    base = base_model(load_config(synthetic_recipe(tiny_data)))
    assert (base.local_mhra, base.global_layers, base.temporal_downsample, base.time_steps) == ("double", [0, 1],
                                                                                              True, 4)
    comp = {v.tag: v.options for v in study_variants("components", base)}
    assert list(comp) == PARTS
    assert comp["none"] == dict(local_mhra="none", local_op="mhra", global_layers=[], dpe=True, fusion="sequential",
                                temporal_downsample=False, num_frames=4)
    assert (comp["global"]["local_mhra"], comp["global"]["global_layers"]) == ("none", [0, 1])
    assert (comp["local"]["local_mhra"], comp["local"]["global_layers"]) == ("double", [])
    assert comp["local+global"]["num_frames"] == 4 and not comp["local+global"]["temporal_downsample"]
    # the paper's "16 frames in, 8 tokens": twice the frames, the same number of tokens
    assert comp["local+global+tdown"]["num_frames"] == 8 and comp["local+global+tdown"]["temporal_downsample"]
    local = {v.tag: (v.options["local_op"], v.options["local_mhra"]) for v in study_variants("local", base)}
    assert local == {"mhra x1": ("mhra", "single"), "mhra x2": ("mhra", "double"),
                     "temporal_mhsa x2": ("temporal_mhsa", "double"), "st_adapter x2": ("st_adapter", "double")}
    glob = [(v.options["dpe"], v.options["global_layers"]) for v in study_variants("global", base)]
    assert glob == [(True, [0, 1]), (False, [0, 1]), (True, [3]), (True, [2, 3]), (True, [0, 1, 2, 3])]
    assert [v.options["fusion"] for v in study_variants("fusion", base)] == [
        "sequential", "parallel", "hierarchical_q", "hierarchical_kv"]
    every = study_variants("all", base)
    # the full model is in all four studies: trained once
    assert len(every) == 18 and len({v.key for v in every}) == 15
    with pytest.raises(u.UserError, match="unknown study"):
        study_variants("tables", base)


def _results(out):
    return sorted((out / "results").glob("*.json")) if (out / "results").is_dir() else []


def test_components_study_resumes_after_a_kill_and_reports_real_numbers(tiny_data, tmp_path, capsys):
    from uniformerv2.cli import main

    out = tmp_path / "study"
    args = ["ablate", "--study", "components", "--data", str(tiny_data), "--output", str(out), "--epochs", "1",
            "--quiet", *TINY]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "uniformerv2", *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 600
            while len(_results(out)) < 2 and proc.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            proc.kill()  # mid-study, SIGKILL: nothing gets to clean up
        finally:
            proc.kill()
            proc.wait()
    finished = {p.name: p.read_text() for p in _results(out)}
    assert 2 <= len(finished) < 5 and not (out / "report.json").exists()

    assert main([*args, "--jobs", "2"]) == 0  # the rest two at a time, each in a process of its own
    log = capsys.readouterr().out
    assert log.count("finished earlier") == len(finished) and log.count("training ...") + log.count(
        "resuming ...") == 5 - len(finished)
    for name, text in finished.items():  # finished runs were not trained again
        assert json.loads((out / "results" / name).read_text())["seconds"] == json.loads(text)["seconds"]
    trained = [p for p in _results(out) if p.name not in finished]
    for p in trained:  # in a worker: its output in a log file of its own, its time and CPU time measured
        res = json.loads(p.read_text())
        assert res["cpu_seconds"] > 0 and res["seconds"] > 0
        assert "training videos" in (out / "runs" / res["key"] / "seed0.log").read_text()

    report = json.loads((out / "report.json").read_text())
    rows = {r["tag"]: r for r in report["rows"]}
    assert list(rows) == PARTS and report["chance"] == 0.5
    for tag, r in rows.items():
        model = u.from_pretrained(out / "runs" / r["key"] / "seed0" / "final")
        fresh = u.create_model("tiny_ssv2_8x64", img_size=32, num_classes=2, **r["options"])
        assert r["params"] == sum(p.numel() for p in fresh.parameters()) == sum(p.numel() for p in model.parameters())
        assert r["flops"] == count_flops(fresh) > 0
        assert r["metric"] == "test" and r["seconds"] > 0
        # the reported top-1 is the share of the test videos the trained model gets right
        test = [(str(tiny_data / v), int(c)) for v, c in
                (ln.rsplit(",", 1) for ln in (tiny_data / "test.csv").read_text().splitlines())]
        preds = json.loads((out / "runs" / r["key"] / "seed0" / "test" / "predictions.json").read_text())
        assert sorted((p["video"], p["label"]) for p in preds) == sorted(test)
        assert r["top1"] == pytest.approx(100 * sum(p["pred"] == p["label"] for p in preds) / len(test))
        if tag == "local+global":   # and those predictions are the model's: predict gives the same classes
            clf = u.VideoClassifier(model, device="cpu")
            got = {str(p.path): p.top_k[0].index for p in clf.predict([v for v, _ in test], top_k=1)}
            assert [got[p["video"]] for p in preds] == [p["pred"] for p in preds]
    # FLOPs of the frame-only ViT by hand: stem, 4 layers of QKV/proj/MLP (24·L·C² per frame) and attention
    # (4·L²·C per frame) on 4 frames of 1 + 4·4 tokens, C = 64, and the 2-class head
    c, tokens, frames, depth = 64, 17, 4, 4
    stem = 2 * (frames * 16) * c * (3 * 8 * 8)
    assert rows["none"]["flops"] == stem + frames * depth * (24 * tokens * c * c + 4 * tokens**2 * c) + 2 * c * 2
    g = {tag: r["gflops"] for tag, r in rows.items()}
    assert g["none"] < g["global"] < g["local+global"] < g["local+global+tdown"]
    assert g["none"] < g["local"] < g["local+global"]
    md = (out / "ablation.md").read_text()
    assert all(f"| {r['variant']} | {r['params']:,} | {r['gflops']:.3f} |" in md for r in rows.values())
    assert "69.5 SSv2" in md and (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_seeds_give_mean_spread_and_a_chart_per_table(tmp_path):
    rows = [{"study": s, "variant": f"{s} {k}", "tag": str(k), "params": 1000, "gflops": 0.1, "top1": m,
             "top1_sd": sd, "top1_min": lo, "top1_max": hi, "top1_seeds": seeds, "metric": "test", "seconds": 60.0,
             "cpu_seconds": 55.0, "resumed": False, "paper": ""}
            for s in ("local", "fusion") for k, seeds in enumerate(([90.0, 92.0, 97.0], [40.0, 50.0, 60.0]))
            for m, sd, lo, hi in [(sum(seeds) / 3, (sum((x - sum(seeds) / 3) ** 2 for x in seeds) / 2) ** 0.5,
                                   min(seeds), max(seeds))]]
    report = {"study": "all", "date": "2026-12-07", "dataset": "d", "seeds": [0, 1, 2], "chance": 1 / 6,
              "rows": rows, "recipe": {"preset": "p", "epochs": 12, "batch_size": 8, "lr": 1e-3},
              "machine": {"jobs": 2, "threads": 1}}
    md = markdown(report)
    assert "| local 0 | 1,000 | 0.100 | 93.0 ± 3.6 | 90.0–97.0 | 60 | 55 |" in md
    assert "| fusion 1 | 1,000 | 0.100 | 50.0 ± 10.0 | 40.0–60.0 | 60 | 55 |" in md
    assert "2 runs at a time, 1 thread(s) each" in md
    charts = plot_each_study(report, tmp_path)
    assert sorted(charts) == ["fusion", "local"]
    assert all(open(c, "rb").read(4) == b"\x89PNG" for c in charts.values())
    assert plot_each_study({**report, "rows": rows[:2]}, tmp_path / "one") == {}  # one study: its chart is the chart


def test_without_matplotlib_there_is_no_chart(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = {"rows": [{"study": "components", "variant": "x", "top1": 50.0, "top1_sd": None, "metric": "test"}],
              "chance": 0.5}
    assert plot(report, tmp_path / "a.png") is False and not (tmp_path / "a.png").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    from uniformerv2.cli import main

    assert main(["ablate", "--data", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "not a synthetic dataset" in capsys.readouterr().err
    assert main(["ablate", "--config", "demo_synth", "--classes", "growing"]) == 2
    assert main(["ablate", "--jobs", "0", "--output", str(tmp_path / "o")]) == 2
    assert "--data and --classes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ablate", "--study", "table5"])
    assert "invalid choice" in capsys.readouterr().err


def test_flops_count_attention_on_cpu():
    from torch.utils.flop_counter import FlopCounterMode

    # PyTorch's counter has no formula for the CPU attention kernel; ours adds QKᵀ and AV: 4·L²·C per frame and layer
    m = u.create_model("uniformerv2_nano", num_classes=2, global_layers=[], local_mhra="none").eval()
    with FlopCounterMode(display=False) as plain:
        m(torch.zeros(1, 3, 8, 32, 32))
    frames, tokens, c = 8, 1 + 4 * 4, 32
    assert count_flops(m) - plain.get_total_flops() == frames * m.cfg.depth * 4 * tokens**2 * c


NEW_OPTIONS = {
    "temporal_mhsa": dict(local_mhra="double", local_op="temporal_mhsa"),
    "st_adapter": dict(local_mhra="double", local_op="st_adapter"),
    "no_dpe": dict(dpe=False),
}


@pytest.mark.parametrize("name", sorted(NEW_OPTIONS))
def test_new_options_go_through_the_trainer_and_load_back(name, tiny_data, tmp_path):
    """Each ablation option in a real training run (the one `ablate` does): the zero-initialised operator moves,
    the run's model directory records the option, and what loads back is the model that was tested."""
    from uniformerv2.engine import train

    options = NEW_OPTIONS[name]
    cfg = load_config(synthetic_recipe(tiny_data, epochs=1), TINY + ["train.progress=false"])
    cfg = load_config(cfg, {"model": {"options": options}})
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] > 0 and summary["test"]["top1"] is not None
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["model"]
    assert {k: saved[k] for k in options} == options
    model = u.load_model(tmp_path / "run" / "final")
    assert {k: getattr(model.cfg, k) for k in options} == options
    if "local_op" in options:
        op = model.blocks[0].lmhra1
        zero_init = op.up.weight if name == "st_adapter" else op.attn.proj.weight
        assert float(zero_init.detach().abs().sum()) > 0  # trained away from the identity
    else:
        assert len(model.dpe) == 0 and not any(k.startswith("dpe.") for k in model.state_dict())
