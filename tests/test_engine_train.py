"""End-to-end training: learning, NaN steps, corrupt videos, exact resume after SIGKILL, torchrun DDP."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import uniformerv2
from test_engine_support import ToyClips, toy_config
from uniformerv2.engine import TrainingDiverged, train

TRAIN_MODULE = importlib.import_module("uniformerv2.engine.train")
ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def records(run: Path, key: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if key in r]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------------------ in-process, toy clips
def test_loss_falls_and_accuracy_rises(tmp_path):
    cfg = toy_config(epochs=4, eval_every=1)
    s = train(cfg, tmp_path / "run", datasets={"train": ToyClips(64), "val": ToyClips(32, seed=1),
                                               "test": ToyClips(24, seed=2)})
    steps = records(tmp_path / "run", "loss")
    first, last = steps[:4], steps[-4:]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    assert mean(first, "loss") > 1.2 and mean(last, "loss") < 0.6 * mean(first, "loss")
    assert mean(last, "train_top1") > mean(first, "train_top1") + 30
    val = [r["val_top1"] for r in records(tmp_path / "run", "val_top1")]
    assert len(val) == 4 and min(val) >= 90.0
    assert s["steps"] == 32 and s["test"]["count"] == 24 and s["test"]["top1"] >= 90.0
    # by hand, with plain forward passes: the initial weights are near chance on val, the final ones score
    # exactly the reported test top-1
    torch.manual_seed(toy_config()["seed"])
    init = uniformerv2.create_model("uniformerv2_nano", **toy_config()["model"]["options"]).eval()
    final = uniformerv2.from_pretrained(tmp_path / "run" / "final").eval()

    def top1(model, data):
        with torch.no_grad():
            pred = model(torch.stack([data[i]["video"] for i in range(len(data))])).argmax(1)
        return 100 * float((pred == torch.tensor([data.label(i) for i in range(len(data))])).float().mean())
    assert top1(init, ToyClips(32, seed=1)) <= 50.0 < min(val)                    # chance: 25 %
    assert top1(final, ToyClips(24, seed=2)) == pytest.approx(s["test"]["top1"], abs=1e-9)
    # the logged LR follows warmup (2 steps) + cosine to min_lr
    lrs = [r["lr"] for r in steps]
    assert lrs[0] < lrs[1] <= 2e-3 and lrs[-1] < 1e-4 and lrs == sorted(lrs[:2]) + sorted(lrs[2:], reverse=True)
    # the final model directory loads, with labels-free config and the data settings
    model = uniformerv2.from_pretrained(tmp_path / "run" / "final")
    assert model.cfg.num_classes == 4 and model.data_config.num_frames == 4
    for name in ("config.yaml", "curves.png", "best/model.safetensors", "test/per_class.csv",
                 "test/predictions.json", "test/confusion.png"):
        assert (tmp_path / "run" / name).is_file(), name
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["base_lr"] == 2e-3 and start["lr_scaling"] == "none"


def test_nan_loss_is_skipped_and_counted(tmp_path, monkeypatch):
    real, calls = TRAIN_MODULE.compute_loss, {"n": 0}

    def flaky(logits, labels):
        calls["n"] += 1
        loss = real(logits, labels)
        return loss * float("nan") if calls["n"] in (3, 4) else loss

    monkeypatch.setattr(TRAIN_MODULE, "compute_loss", flaky)
    s = train(toy_config(epochs=1, eval_every=0), tmp_path / "run", datasets={"train": ToyClips(48)})
    assert s["bad_steps"] == 2 and s["steps"] == 6 and s["consecutive_bad"] == 0
    logged = records(tmp_path / "run", "loss")
    assert [r["bad_steps"] for r in logged] == [0, 0, 1, 2, 2, 2]
    assert [r["loss"] is None for r in logged] == [False, False, True, True, False, False]
    w = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in w.values())

    # always NaN: the run stops after max_bad_steps consecutive ones
    monkeypatch.setattr(TRAIN_MODULE, "compute_loss", lambda lg, lb: real(lg, lb) * float("nan"))
    with pytest.raises(TrainingDiverged, match="3 consecutive"):
        train(toy_config(epochs=1, max_bad_steps=3), tmp_path / "run2", datasets={"train": ToyClips(48)})
    assert records(tmp_path / "run2", "event")[-1]["event"] == "diverged"


def test_grad_accumulation_equals_the_big_batch(tmp_path):
    data = {"train": ToyClips(32)}
    a = train(toy_config(epochs=1, eval_every=0), tmp_path / "a", datasets=data)
    b = train(toy_config(epochs=1, eval_every=0, accum_steps=4), tmp_path / "b", datasets=data)
    assert a["steps"] == b["steps"] == 4
    wa, wb = load_file(tmp_path / "a/final/model.safetensors"), load_file(tmp_path / "b/final/model.safetensors")
    torch.manual_seed(toy_config()["seed"])  # the run's initial weights
    init = uniformerv2.create_model("uniformerv2_nano", **toy_config()["model"]["options"]).state_dict()
    moved = max((wa[k] - init[k]).abs().max().item() for k in wa)
    # Adam turns float-rounding differences of near-zero gradients into differences of up to ~lr
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < moved / 10
    ra, rb = records(tmp_path / "a", "loss"), records(tmp_path / "b", "loss")
    assert [r["loss"] for r in ra] == pytest.approx([r["loss"] for r in rb], rel=1e-5)
    assert [r["grad_norm"] for r in ra] == pytest.approx([r["grad_norm"] for r in rb], rel=1e-4)


# ------------------------------------------------------------------ real videos through the CLI
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """24 + 7 small H.264 clips (class = i % 2), plus a missing and a corrupt entry list."""
    from videogen import write_video

    root = tmp_path_factory.mktemp("videos")
    (root / "v").mkdir()
    for i in range(31):
        write_video(root / "v" / f"{i:02d}.mp4", num_frames=8 + i % 5, width=40, height=32, fps=8)
    (root / "v" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 4)
    (root / "train.csv").write_text("".join(f"v/{i:02d}.mp4,{i % 2}\n" for i in range(24)))
    (root / "test.csv").write_text("".join(f"v/{i:02d}.mp4,{i % 2}\n" for i in range(24, 31)))
    bad = [f"v/{i:02d}.mp4,{i % 2}\n" for i in range(16)]
    bad[3], bad[8] = "v/missing.mp4,1\n", "v/corrupt.mp4,0\n"
    (root / "train_bad.csv").write_text("".join(bad))
    (root / "cfg.yaml").write_text(f"""
seed: 3
model:
  preset: uniformerv2_nano
  options: {{num_classes: 2, num_frames: 4, head_dropout: 0.0, global_mlp_dropout: 0.0}}
data:
  root: {root}
  train: train.csv
  num_workers: 0
  pipeline: {{rand_augment: null}}
train:
  epochs: 2
  batch_size: 4
  lr: 1.0e-3
  warmup_epochs: 0.5
  log_every: 1
  eval_every: 0
  progress: false
eval:
  batch_size: 2
""")
    return root


def cli(*args, env=None, check=True):
    p = subprocess.run([PY, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, **(env or {})}, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


KILLER = """
import os, signal, sys, importlib
sys.argv = ["uniformerv2"] + sys.argv[1:]
mod = importlib.import_module("uniformerv2.engine.train")
real, calls = mod.compute_loss, [0]
def dying(logits, labels):
    calls[0] += 1
    if calls[0] == int(os.environ["KILL_AT_CALL"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(logits, labels)
mod.compute_loss = dying
from uniformerv2.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_mid_epoch_then_resume_is_bit_identical(videos, tmp_path):
    over = ["train.checkpoint_every=2", "data.num_workers=1", "model.options.head_dropout=0.3",
            "model.options.drop_path_rate=0.1"]  # dropout + drop-path: the model's RNG stream matters too
    cli("train", "--config", videos / "cfg.yaml", "--output", tmp_path / "full", *over)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    # 6 steps/epoch; checkpoints after steps 2 and 4; die inside step 9 (epoch 1, batch 3), after step 8's checkpoint
    p = subprocess.run([PY, str(killer), "train", "--config", str(videos / "cfg.yaml"), "--output",
                        str(tmp_path / "cut"), *over], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "KILL_AT_CALL": "9"}, timeout=300)
    assert p.returncode == -9, p.stderr
    assert not (tmp_path / "cut" / "final").exists()
    assert [f.name for f in sorted((tmp_path / "cut" / "checkpoints").glob("step_*.pt"))] == \
        ["step_00000004.pt", "step_00000006.pt", "step_00000008.pt"][-2:]
    r = cli("train", "--output", tmp_path / "cut", "--resume", *over)
    assert "resumed from" in r.stdout and "at step 8 (epoch 1, batch 2/6)" in r.stdout
    assert same_weights(tmp_path / "full" / "final", tmp_path / "cut" / "final")
    full, cut = records(tmp_path / "full", "loss"), records(tmp_path / "cut", "loss")
    assert [x["step"] for x in cut] == list(range(1, 13))  # no step logged twice after the resume
    assert [x["loss"] for x in full] == [x["loss"] for x in cut]
    # a second --resume of a finished run changes nothing
    before = (tmp_path / "cut" / "final" / "model.safetensors").read_bytes()
    cli("train", "--output", tmp_path / "cut", "--resume", *over)
    assert (tmp_path / "cut" / "final" / "model.safetensors").read_bytes() == before


def test_corrupt_videos_are_skipped_and_counted(videos, tmp_path):
    run = tmp_path / "run"
    r = cli("train", "--config", videos / "cfg.yaml", "--output", run, "data.train=train_bad.csv",
            "data.test=train_bad.csv", "train.epochs=1")
    steps = records(run, "skipped_videos")
    assert steps[-1]["skipped_videos"] == 2 and steps[-1]["step"] == 4  # 16 entries, batch 4: all seen once
    end = records(run, "event")[-1]
    assert end["event"] == "end" and end["skipped_videos"] == 2
    test = json.loads((run / "test" / "metrics.json").read_text())
    assert test["count"] == 14 and sorted(Path(p).name for p in test["skipped"]) == ["corrupt.mp4", "missing.mp4"]
    preds = json.loads((run / "test" / "predictions.json").read_text())
    assert len(preds) == 14 and len({p["index"] for p in preds}) == 14 and 3 not in {p["index"] for p in preds}
    assert "test top-1" in r.stdout


def test_eval_cli_writes_every_output(videos, tmp_path):
    cli("train", "--config", videos / "cfg.yaml", "--output", tmp_path / "run", "train.epochs=1")
    out = tmp_path / "ev"
    r = cli("eval", "--config", videos / "cfg.yaml", "--model", tmp_path / "run", "--output", out,
            "data.test=test.csv", "eval.test_clips=2", "eval.test_crops=3", "eval.aggregate=logits")
    m = json.loads((out / "metrics.json").read_text())
    assert m["count"] == 7 and m["aggregate"] == "logits" and "top-1" in r.stdout
    assert (out / "confusion.png").stat().st_size > 1000
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,name,support,correct,accuracy" and len(rows) == 3
    assert sum(int(x.split(",")[2]) for x in rows[1:]) == 7
    bad = cli("eval", "--config", videos / "cfg.yaml", "--model", tmp_path / "nope", "data.test=test.csv",
              check=False)
    assert bad.returncode == 2 and "no such file" in bad.stderr


@pytest.mark.slow
def test_torchrun_two_processes_match_one(videos, tmp_path):
    over = ["data.test=test.csv", "train.epochs=2"]
    cli("train", "--config", videos / "cfg.yaml", "--output", tmp_path / "one", *over)
    p = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "uniformerv2", "train", "--config", str(videos / "cfg.yaml"), "--output",
                        str(tmp_path / "two"), *over], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout + p.stderr
    one_end, two_end = records(tmp_path / "one", "event")[-1], records(tmp_path / "two", "event")[-1]
    assert two_end["ranks_in_sync"] is True and two_end["steps"] == one_end["steps"] == 12
    start = records(tmp_path / "two", "event")[0]
    assert start["world_size"] == 2 and start["micro_batch"] == 2 and start["global_batch"] == 4
    w1 = load_file(tmp_path / "one" / "final" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "final" / "model.safetensors")
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 5e-4  # see test_grad_accumulation...
    l1, l2 = records(tmp_path / "one", "loss"), records(tmp_path / "two", "loss")
    assert [r["loss"] for r in l1] == pytest.approx([r["loss"] for r in l2], rel=1e-4, abs=1e-5)
    # sharded test: 7 videos over 2 ranks, each counted once, same metrics as one process
    t1 = json.loads((tmp_path / "one" / "test" / "metrics.json").read_text())
    t2 = json.loads((tmp_path / "two" / "test" / "metrics.json").read_text())
    assert t2["count"] == 7 and t2["duplicates_dropped"] == 0 and t2["top1"] == t1["top1"]
    preds = json.loads((tmp_path / "two" / "test" / "predictions.json").read_text())
    assert sorted(p["index"] for p in preds) == list(range(7))
    assert not (tmp_path / "two" / "final_rank1").exists() and (tmp_path / "two" / "config.yaml").is_file()
