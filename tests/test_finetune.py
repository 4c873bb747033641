"""``uniformerv2 finetune`` / ``uniformerv2.finetune``: your own class folders in, a model directory out.

Real videos (PyAV, written here: each class has its own colour under noise and a moving distractor), the
real decoder, a tiny model saved with ``save_pretrained`` as the local starting weights (or a tiny CLIP file
through a test registry entry, from the cache, offline), real training runs, real ``train`` / ``predict``
subprocesses and a real two-process ``torchrun``.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import uniformerv2 as u
from uniformerv2.engine import load_config, train
from uniformerv2.engine import finetune as F
from uniformerv2.engine.prepare import prepare_videos, stratified_split
from uniformerv2.errors import UserError
from uniformerv2.synth import write_mp4

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
COLOURS = {"blue": (40, 60, 200), "green": (40, 190, 60), "red": (200, 40, 40), "yellow": (210, 200, 40)}
QUICK = ["data.num_workers=0", "data.pipeline.rand_augment=null"]  # colours are the classes: no colour ops


def colour_videos(root: Path, per_class: int = 10, seed: int = 0, classes=COLOURS) -> Path:
    """``root/<colour>/NN.mp4``: 12 frames of 40x32, the class colour under noise, a moving random square."""
    rng = np.random.default_rng(seed)
    for name, c in classes.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            f = np.clip(np.array(c)[None, None, None] + rng.normal(0, 25, (12, 32, 40, 3)), 0, 255).astype(np.uint8)
            x0 = int(rng.integers(0, 32))
            for t in range(12):
                x = (x0 + 2 * t) % 32
                f[t, 10:18, x:x + 8] = rng.integers(0, 255, 3)
            write_mp4(d / f"{k:02d}.mp4", f)
    return root


def broken_videos(folder: Path, good: Path) -> list[Path]:
    """Two undecodable files: random bytes, and a real file cut in half."""
    folder.mkdir(parents=True, exist_ok=True)
    junk, cut = folder / "junk.mp4", folder / "cut.mp4"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return [junk, cut]


def cli(*args, timeout=600):
    """The command as a user runs it: a real subprocess."""
    return subprocess.run([PY, "-m", "uniformerv2", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def main(capsys, *args) -> tuple[int, str, str]:
    """The command's entry point in this process (same code path as the subprocess, without its start-up)."""
    from uniformerv2.cli import main as entry

    try:
        rc = entry([str(a) for a in args])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def nano(tmp_path_factory) -> Path:
    """The local starting weights: a tiny (uniformerv2_nano) video model of 7 other classes."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("nano") / "model"
    u.create_model("uniformerv2_nano", num_classes=7, labels=[f"other {k}" for k in range(7)]).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = colour_videos(tmp_path_factory.mktemp("videos") / "data", per_class=8)
    broken_videos(root / "red", root / "red" / "00.mp4")  # red: 10 usable + 2 undecodable
    return root


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory, data, nano):
    """One fine-tuning run through the Python API (what the CLI calls), with its printed lines."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("runs") / "scene"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        summary = u.finetune(data, out, weights=str(nano), epochs=5, batch_size=8, lr=3e-3, progress=False,
                             overrides=QUICK)
    return out, summary, buf.getvalue()


# ----------------------------------------------------------------------------------------------- done when
def test_finetune_learns_reports_and_keeps_class_names(scene_run, data):
    out, summary, printed = scene_run
    val = summary["val"]
    assert val["count"] == 8 and val["views"] == "4x3"  # 2 of 8 per class, the scene recipe's test views
    assert val["top1"] >= 87.5 and val["mean_class_accuracy"] >= 87.5  # chance: 25 %
    metrics = json.loads((out / "val" / "metrics.json").read_text())
    assert metrics["top1"] == val["top1"] and metrics["count"] == 8
    rows = (out / "val" / "per_class.csv").read_text().splitlines()
    assert rows[0].startswith("class,name") and [r.split(",")[1] for r in rows[1:]] == list(COLOURS)
    assert (out / "val" / "confusion.png").stat().st_size > 0
    model_dir = Path(summary["model_dir"])
    assert model_dir.parent == out and model_dir.name in ("best", "final")
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["labels"] == list(COLOURS) and cfg["model"]["num_classes"] == 4
    # the three lines a user needs next, last
    last = printed.strip().splitlines()[-3:]
    assert last[0] == f"model: {model_dir}"
    assert last[1].startswith(f"val accuracy: top-1 {val['top1']:.2f}%")
    assert last[2] == f"next: uniformerv2 predict VIDEO.mp4 --model {model_dir}"


def test_undecodable_files_are_listed_and_left_out(scene_run, data):
    out, summary, printed = scene_run
    report = json.loads((out / "scan.json").read_text())
    bad = sorted(Path(f["path"]).name for f in report["files"])
    assert bad == ["cut.mp4", "junk.mp4"] and report["total"] == 34 and report["ok"] == 32
    assert "2 of 34 videos cannot be decoded and are left out" in printed
    listed = (out / "train.csv").read_text() + (out / "val.csv").read_text()
    assert "junk.mp4" not in listed and "cut.mp4" not in listed
    assert summary["counts"] == {c: [6, 2] for c in COLOURS}


def test_split_is_stratified_seeded_and_written(scene_run, data):
    out, _, _ = scene_run
    train = [ln.rsplit(",", 1) for ln in (out / "train.csv").read_text().splitlines()]
    val = [ln.rsplit(",", 1) for ln in (out / "val.csv").read_text().splitlines()]
    assert (out / "labels.txt").read_text().splitlines() == list(COLOURS)
    assert not {p for p, _ in train} & {p for p, _ in val}
    assert sorted(p for p, _ in train + val) == sorted(
        str(p.relative_to(data)) for p in data.rglob("*.mp4") if p.name[0].isdigit())
    for k, name in enumerate(COLOURS):  # the label of every line is its folder's class
        assert all(p.startswith(f"{name}/") for p, c in train + val if int(c) == k)
        assert sum(int(c) == k for _, c in val) == 2
    # the same seed gives the same split; another seed another one
    items = [(str(data / p), int(c)) for p, c in train + val]
    again = stratified_split(items, 4, 0.2, 6666)[1]
    assert sorted(str(Path(p).relative_to(data)) for p, _ in again) == sorted(p for p, _ in val)
    assert stratified_split(items, 4, 0.2, 1)[1] != again


def test_config_is_a_train_recipe_that_reproduces_the_weights(scene_run, tmp_path):
    """uniformerv2 train --config RUN/config.yaml --output X: the same final weights, bit for bit (CPU)."""
    out, summary, _ = scene_run
    text = (out / "config.yaml").read_text()
    assert text.startswith("# uniformerv2 finetune: the resolved recipe")
    cfg = load_config(out / "config.yaml")
    assert cfg["model"]["checkpoint"] == str((out / "init").resolve()) and cfg["model"]["head"] == "keep"
    assert cfg["train"]["precision"] == "fp32" and cfg["train"]["lr_scaling"] == "none"  # --lr: as given
    assert cfg["train"]["lr"] == 3e-3 and cfg["train"]["min_lr"] == pytest.approx(3e-3 * 1e-6 / 2e-5)
    assert cfg["data"]["pipeline"]["flip"] is True and cfg["eval"]["test_clips"] == 4
    again = train(out / "config.yaml", tmp_path / "again")
    assert again["steps"] == summary["train"]["steps"] == 15  # 24 videos / 8 x 5 epochs
    a, b = load_file(out / "final" / "model.safetensors"), load_file(tmp_path / "again" / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_start_model_has_the_source_weights_and_a_new_small_head(scene_run, nano):
    out, _, _ = scene_run
    init, src = load_file(out / "init" / "model.safetensors"), load_file(nano / "model.safetensors")
    w = init["head.fc.weight"]
    assert w.shape == (4, 32) and w.all() and 1e-5 < w.std() < 4e-5 and not init["head.fc.bias"].any()
    assert all(torch.equal(init[k], src[k]) for k in src if not k.startswith("head.fc"))
    assert json.loads((out / "init" / "config.json").read_text())["labels"] == list(COLOURS)


def test_model_directory_classifies_with_predict(scene_run, data):
    out, summary, _ = scene_run
    val = [ln.rsplit(",", 1) for ln in (out / "val.csv").read_text().splitlines()]
    videos = [data / p for p, _ in val]
    r = cli("predict", *videos, "--model", summary["model_dir"], "--json", "--top-k", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    got = [res["top_k"][0]["label"] for res in json.loads(r.stdout)]
    truth = [list(COLOURS)[int(c)] for _, c in val]
    assert sum(g == t for g, t in zip(got, truth)) >= 7, (got, truth)


def test_model_directory_gives_features(scene_run, data, tmp_path, capsys):
    out, summary, _ = scene_run
    video = data / (out / "val.csv").read_text().splitlines()[0].rsplit(",", 1)[0]
    rc, _, err = main(capsys, "features", video, "--model", summary["model_dir"], "--out", tmp_path / "f",
                      "--device", "cpu", "--quiet")
    assert rc == 0, err
    files = list((tmp_path / "f").rglob("*.safetensors"))
    feats = load_file(files[0])
    assert len(files) == 1 and any(v.shape[-1] == 32 for v in feats.values())  # nano's width


def test_a_class_of_broken_videos_is_refused_in_one_line(tmp_path, nano, capsys):
    root = colour_videos(tmp_path / "data", per_class=3, classes={"blue": COLOURS["blue"], "red": COLOURS["red"]})
    broken_videos(root / "smoke", root / "red" / "00.mp4")
    rc, out, err = main(capsys, "finetune", root, "--output", tmp_path / "run", "--from", nano, "--quiet", *QUICK)
    assert rc == 2
    err = err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("uniformerv2: error: class 'smoke' (0 of 2 usable)"), err
    assert f"undecodable files: {tmp_path / 'run' / 'scan.json'}" in err[0] and "--skip-small-classes" in err[0]
    report = json.loads((tmp_path / "run" / "scan.json").read_text())
    assert sorted(Path(f["path"]).name for f in report["files"]) == ["cut.mp4", "junk.mp4"]
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "init").exists()
    # the documented alternative: leave the class out and go on
    rc, out, err = main(capsys, "finetune", root, "--output", tmp_path / "run2", "--from", nano, "--quiet",
                        "--skip-small-classes", "--epochs", "1", "--batch-size", "2", *QUICK)
    assert rc == 0, err
    assert "left out, too few usable videos: 'smoke'" in out
    assert (tmp_path / "run2" / "labels.txt").read_text().splitlines() == ["blue", "red"]
    assert out.strip().splitlines()[-1].startswith("next: uniformerv2 predict VIDEO.mp4 --model ")


@pytest.mark.slow
def test_torchrun_two_processes_run_the_command_unchanged(tmp_path, data, nano):
    r = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                        "uniformerv2", "finetune", str(data), "--output", str(tmp_path / "run"), "--from", str(nano),
                        "--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--quiet", *QUICK],
                       capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("\nmodel: ") + r.stdout.startswith("model: ") == 1  # printed by the first process only
    assert r.stdout.count("classes (class folders)") == 1
    events = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"event"' in ln]
    assert events[0]["world_size"] == 2 and events[0]["micro_batch"] == 4 and events[-1]["ranks_in_sync"] is True
    assert events[-1]["steps"] == 6  # 24 videos / 8 x 2 epochs
    summary = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert summary["val"]["count"] == 8 and Path(summary["model_dir"]).is_dir()


# ----------------------------------------------------------------------------------------------- recipes
@pytest.fixture
def tiny_clip_name(tmp_path, monkeypatch):
    """``clip_tiny.test``: a tiny OpenAI-CLIP file (uniformerv2_tiny shapes) registered by name, in the cache."""
    from weightfiles import tiny_clip_visual, write_openai_clip

    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    path = write_openai_clip(home / "weights" / "tiny_clip.pt", tiny_clip_visual())
    entry = {"name": "clip_tiny.test", "file": "tiny_clip.pt", "urls": ["https://weights.example.org/tiny_clip.pt"],
             "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "layout": "clip", "arch": "uniformerv2_tiny",
             "origin": "user"}
    (tmp_path / "registry.json").write_text(json.dumps({"entries": [entry]}))
    monkeypatch.setenv("UNIFORMERV2_REGISTRY", str(tmp_path / "registry.json"))
    monkeypatch.setenv("UNIFORMERV2_HOME", str(home))
    monkeypatch.setenv("UNIFORMERV2_OFFLINE", "1")  # from the cache, never the network
    return "clip_tiny.test", path


def test_motion_arms_clip_with_local_and_global_blocks_and_scales_the_lr(tmp_path, tiny_clip_name, capsys):
    name, clip_file = tiny_clip_name
    root = colour_videos(tmp_path / "data", per_class=4, classes={"blue": COLOURS["blue"], "red": COLOURS["red"]})
    out = tmp_path / "run"
    s = u.finetune(root, out, weights=name, kind="motion", batch_size=2, progress=False,
                   overrides=["model.options.num_frames=8", "train.max_steps=2", "data.num_workers=0"])
    cfg = load_config(out / "config.yaml")
    opts, pipe, t = cfg["model"]["options"], cfg["data"]["pipeline"], cfg["train"]
    assert cfg["model"]["preset"] == "uniformerv2_tiny"
    assert opts["local_mhra"] == "double" and opts["temporal_downsample"] is True
    assert opts["global_layers"] == [1, 2, 3]  # the last 2/3 of the layers, as SSv2 (8 of 12, 16 of 24)
    assert opts["drop_path_rate"] == 0.2 and opts["global_drop_path_rate"] == 0.4
    assert pipe["flip"] is False and pipe["repeated_aug"] == 2 and pipe["bgr"] is False
    assert (pipe["test_clips"], pipe["test_crops"]) == (1, 3) and s["val"]["views"] == "1x3"
    # SSv2 B/16 from CLIP: 4e-5 at 128 videos, linear in the batch; the 1e-6 ends scale with it
    assert (t["lr"], t["lr_scaling"], t["lr_ref_batch"]) == (4e-5, "linear", 128)
    assert t["min_lr"] == t["warmup_start_lr"] == pytest.approx(1e-6 * 2 / 128)
    assert (t["epochs"], t["warmup_epochs"]) == (22, 5)
    start = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()][0]
    assert start["base_lr"] == pytest.approx(4e-5 * 2 / 128)
    assert "linear in the global batch: x 2/128 = 6.25e-07" in capsys.readouterr().out
    # the backbone came from the CLIP file (its first attention projection), the rest is new
    from uniformerv2.weights.loading import arm_backbone

    ref = u.create_model("uniformerv2_tiny", num_classes=2, local_mhra="double", temporal_downsample=True,
                         global_layers=[1, 2, 3])
    arm_backbone(ref, clip_file)
    init = load_file(out / "init" / "model.safetensors")
    for k in ("blocks.0.attn.qkv.weight", "stem.weight", "pos_embed"):
        assert torch.equal(init[k], ref.state_dict()[k]), k


def test_frozen_backbone_from_a_full_model(tmp_path, nano):
    root = colour_videos(tmp_path / "data", per_class=3, classes={"blue": COLOURS["blue"], "red": COLOURS["red"]})
    out = tmp_path / "run"
    u.finetune(root, out, weights=str(nano), frozen_backbone=True, batch_size=2, lr=1e-3, progress=False,
               overrides=["train.max_steps=3", "data.num_workers=0"])
    cfg = load_config(out / "config.yaml")
    assert cfg["model"]["options"]["frozen_backbone"] is True
    # without --lr the official frozen family's LR (from a trained model: 5e-5 at 512), linear in the batch
    assert F.recipe_run(F.resolve_source(str(nano)), "scene", 32, True)[1].name == F.FROZEN_RUNS["video"]
    init, src = load_file(out / "init" / "model.safetensors"), load_file(nano / "model.safetensors")
    assert "balance" in src and "balance" not in init  # the frozen variant: the query alone feeds the head
    assert all(torch.equal(init[k], src[k]) for k in init if not k.startswith("head.fc"))
    final = load_file(out / "final" / "model.safetensors")
    backbone = [k for k in init if k.split(".")[0] in ("stem", "cls_token", "pos_embed", "norm_pre", "blocks")]
    assert backbone and all(torch.equal(final[k], init[k]) for k in backbone)  # frozen
    assert not torch.equal(final["query"], init["query"])  # trained
    assert not torch.equal(final["head.fc.weight"], init["head.fc.weight"])


def test_default_starting_points_by_kind():
    """Without --from: scene = the Kinetics-710 B/16 model (its architecture: global blocks only); motion = the
    CLIP ViT-B/16 armed as the SSv2 design (looked up by name only: nothing is downloaded here)."""
    scene = F.resolve_source(F.KINDS["scene"].weights)
    assert (scene.spec, scene.start, scene.arch) == ("k710_b16_8x224.clip", "video", "uniformerv2_b16")
    arch, opts = F.model_options(scene, "scene", False, 10)
    m = u.create_model(arch, **opts)
    assert m.cfg.global_layers == [8, 9, 10, 11] and m.cfg.local_mhra == "none" and not m.cfg.temporal_downsample
    run = F.recipe_run(scene, "scene", 768, False)[1]
    assert (run.name, run.lr, run.batch, run.epochs, run.warmup) == ("mit_b16_8x224", 2e-5, 512, 24, 5)
    motion = F.resolve_source(F.KINDS["motion"].weights)
    assert (motion.spec, motion.start, motion.arch) == ("clip_b16.openai", "image", "uniformerv2_b16")
    arch, opts = F.model_options(motion, "motion", False, 10)
    assert opts["global_layers"] == list(range(4, 12)) and opts["num_frames"] == 16
    assert F.recipe_run(motion, "motion", 768, False)[1].lr == 4e-5
    assert F.recipe_run(motion, "motion", 768, True)[1].name == F.FROZEN_RUNS["image"]  # 8e-4 at 512


def test_memory_plan_checkpoints_only_what_does_not_fit():
    cfg = u.create_model("uniformerv2_b16").cfg
    per_clip = F.activation_bytes(cfg, frozen=False, fp32=False)
    assert per_clip == 8 * 197 * 768 * 12 * 36
    static = 2 * F.GiB
    plan = F.memory_plan(cfg, frozen=False, fp32=False, videos=16, clips_per_video=1, static=static, budget=80 * F.GiB)
    assert (plan["grad_checkpointing"], plan["accum"]) == (0, 1)
    tight = static + 16 * per_clip * 0.6
    plan = F.memory_plan(cfg, frozen=False, fp32=False, videos=16, clips_per_video=1, static=static, budget=tight)
    n = plan["grad_checkpointing"]
    assert 0 < n < 12 and plan["accum"] == 1 and plan["estimate"] <= tight
    assert static + 16 * F.activation_bytes(cfg, frozen=False, fp32=False, checkpointed=n - 1) > tight
    plan = F.memory_plan(cfg, frozen=False, fp32=False, videos=16, clips_per_video=1, static=static,
                         budget=static + 3 * per_clip)
    assert plan["grad_checkpointing"] > 0 and plan["accum"] > 1 and plan["fits"]
    plan = F.memory_plan(cfg, frozen=False, fp32=False, videos=16, clips_per_video=1, static=static, budget=static)
    assert plan["fits"] is False and plan["accum"] == 16 and plan["grad_checkpointing"] == 12
    assert F.activation_bytes(cfg, frozen=True, fp32=False) < per_clip / 5


def test_list_file_with_labels_and_a_val_list(tmp_path, nano):
    root = colour_videos(tmp_path / "videos", per_class=4, classes={"blue": COLOURS["blue"], "red": COLOURS["red"]})
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "labels.txt").write_text("blue\nred\n")
    rows = [(f"{c}/{k:02d}.mp4", c) for c in ("blue", "red") for k in range(4)]
    (lists / "train_list.txt").write_text("".join(f"{p} {c}\n" for p, c in rows if not p.endswith("03.mp4")))
    (lists / "val_list.txt").write_text("".join(f"{p} {c}\n" for p, c in rows if p.endswith("03.mp4")))
    prep = prepare_videos(lists / "train_list.txt", root=root, progress=False)
    assert prep.classes == ["blue", "red"] and prep.layout == "list file" and prep.val_source.startswith("given")
    assert sorted(Path(p).name for p, _ in prep.val) == ["03.mp4", "03.mp4"] and len(prep.train) == 6
    with pytest.raises(UserError, match="labels file"):
        prepare_videos(root, labels=lists / "labels.txt", progress=False)


def test_bad_arguments_are_one_line_errors_before_any_scan(tmp_path, nano, data, scene_run, capsys):
    rc, _, err = main(capsys, "finetune", data, "--output", scene_run[0], "--from", nano)
    assert rc == 2 and err.strip() == (f"uniformerv2: error: {scene_run[0]} already holds a run; pass --resume to "
                                       "continue it or choose another --output")
    rc, _, err = main(capsys, "finetune", tmp_path / "missing", "--output", tmp_path / "run")
    assert rc == 2 and err.strip() == f"uniformerv2: error: {tmp_path / 'missing'}: no such folder or list file"
    rc, out, err = main(capsys, "finetune", data, "--output", tmp_path / "run", "--from", "k710_b16_8x224.clipp")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "did you mean k710_b16_8x224.clip" in err
    assert "scanning" not in out and not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="model.checkpoint is set by finetune"):
        u.finetune(data, tmp_path / "run2", weights=str(nano), progress=False, overrides=["model.checkpoint=x"])
    rc, _, err = main(capsys, "finetune", data, "--output", tmp_path / "run3", "--kind", "action")
    assert rc == 2 and "invalid choice: 'action'" in err and len(err.strip().splitlines()) == 1
    rc, _, err = main(capsys, "finetune", data, "--output", tmp_path / "run4", "--from", nano, "train.epochs")
    assert rc == 2 and "overrides must be key=value" in err


def test_every_argument_is_checked_before_the_scan(tmp_path, nano, data, capsys):
    """A bad --workers, an unknown or bad key=value and a preset with no weights to download: one line, exit 2,
    nothing scanned and no run directory."""
    run = tmp_path / "run"
    for args, message in (
            (["--from", nano, "--workers", "-2"], "must be >= 0, got -2"),
            (["--from", nano, "train.foo=1"], "unknown config key 'train.foo'"),
            (["--from", nano, "data.pipeline.flipp=false"], "unknown data option(s): flipp"),
            (["--from", nano, "train.epochs=0"], "train.epochs must be a positive integer, got 0"),
            (["--from", "tiny_k400_8x64"], "tiny_k400_8x64 is a preset with no weights to download: give --from "
                                           "its weights file")):
        rc, out, err = main(capsys, "finetune", data, "--output", run, *args)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err, (args, err)
        assert "--preset" not in err and "scanning" not in out and not run.exists(), args
    with pytest.raises(UserError, match="workers must be 0 or more, got -2"):
        u.finetune(data, run, weights=str(nano), workers=-2, progress=False)
    assert not run.exists()


def test_eval_runs_on_the_written_config(scene_run, capsys):
    """`uniformerv2 eval --config RUN/config.yaml --model RUN/...` with nothing else: data.test is the val list,
    and the kept model scores there what finetune reported."""
    out, summary, _ = scene_run
    cfg = load_config(out / "config.yaml")
    assert cfg["data"]["test"] == cfg["data"]["val"] == str((out / "val.csv").resolve())
    assert "data.test is the val list" in (out / "config.yaml").read_text()
    assert not (out / "test").exists()  # training itself did not test: finetune evaluated on val, in val/
    rc, printed, _ = main(capsys, "eval", "--config", out / "config.yaml", "--model", summary["model_dir"])
    assert rc == 0
    v = summary["val"]
    assert printed.startswith(f"top-1 {v['top1']:.2f}  top-5 {v['top5']:.2f}  mean class accuracy "
                              f"{v['mean_class_accuracy']:.2f}  ({v['count']} videos, 0 skipped")
