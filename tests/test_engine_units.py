"""Engine building blocks: config, schedule, optimiser groups, checkpoints, samplers, metrics."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

import uniformerv2
from uniformerv2.engine import checkpoint as ckpt
from uniformerv2.engine.config import load_config, parse_overrides, shipped_configs
from uniformerv2.engine.distributed import ShardSampler, TrainSampler, epoch_permutation
from uniformerv2.engine.metrics import aggregate_views, classification_metrics, group_by_video
from uniformerv2.engine.optim import build_optimizer, param_groups
from uniformerv2.engine.schedule import WarmupCosine, scaled_lr
from uniformerv2.errors import UserError


# ---------------------------------------------------------------- config
def test_overrides_are_yaml_and_nested():
    tree = parse_overrides(["train.epochs=3", "data.root=/x y", "model.options.drop_path_rate=0.1",
                            "data.val=null", "train.betas=[0.8, 0.9]"])
    assert tree == {"train": {"epochs": 3, "betas": [0.8, 0.9]}, "data": {"root": "/x y", "val": None},
                    "model": {"options": {"drop_path_rate": 0.1}}}
    cfg = load_config("tiny_cpu", ["train.epochs=3", "train.max_steps=7", "train.batch_size=4", "seed=1",
                                   "model.preset=uniformerv2_nano", "data.train=a.csv"])
    assert (cfg["train"]["epochs"], cfg["train"]["max_steps"], cfg["train"]["batch_size"]) == (3, 7, 4)
    assert cfg["model"]["preset"] == "uniformerv2_nano" and cfg["seed"] == 1 and cfg["data"]["train"] == "a.csv"


def test_unknown_keys_and_bad_values_are_user_errors():
    with pytest.raises(UserError, match="train.epoch"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(UserError, match="positive"):
        load_config(None, ["train.batch_size=0"])
    with pytest.raises(UserError, match="neither a file nor a shipped"):
        load_config("no_such_config")
    assert load_config(None, ["train.lr=1e-5"])["train"]["lr"] == 1e-5  # "1e-5" is a str in YAML 1.1


def test_shipped_recipes_match_the_official_table():
    names = shipped_configs()
    assert "tiny_cpu" in names
    expect = {  # run.sh values (spec section 4): batch, lr, epochs, warmup, views, grad-ckpt
        "k400_b16_8x224_clip": (256, 1e-5, 55, 5, 4, 3, 0),
        "k710_l14_8x224_clip": (512, 1e-5, 40, 5, 4, 3, 0),
        "k710_l14_8x336_clip": (256, 5e-6, 40, 5, 4, 3, 0),
        "k400_b16_8x224_from_k710": (256, 2e-6, 5, 1, 4, 3, 0),
        "k400_l14_32x224_from_k710": (128, 1.5e-6, 5, 1, 4, 3, 0),
        "k400_l14_64x336_from_k710": (128, 1.5e-6, 5, 1, 4, 3, 24),
        "k400_frozen_l14_8x336_clip": (512, 8e-4, 50, 0, 3, 1, 0),
        "k400_frozen_l14_32x336_from_k710": (256, 5e-5, 5, 1, 3, 1, 0),
        "mit_l14_8x336": (512, 1e-5, 18, 5, 4, 3, 21),
        "ssv2_b16_16x224": (128, 4e-5, 22, 5, 1, 3, 0),
        "sthv1_l14_32x224": (128, 2e-5, 22, 5, 1, 3, 15),
        "anet_l14_16x224": (64, 5e-6, 20, 5, 10, 3, 1),
    }
    for name, (batch, lr, epochs, warmup, clips, crops, gc) in expect.items():
        c = load_config(name)
        t = c["train"]
        assert (t["batch_size"], t["lr"], t["epochs"], t["warmup_epochs"]) == (batch, lr, epochs, warmup), name
        assert (c["eval"]["test_clips"], c["eval"]["test_crops"], t["grad_checkpointing"]) == (clips, crops, gc)
        assert (t["weight_decay"], t["clip_grad"], t["min_lr"], t["lr_scaling"], c["seed"]) == \
            (0.05, 20.0, 1e-6, "none", 6666)
        assert c["model"]["preset"] in uniformerv2.list_presets()
    for name in names:
        load_config(name)  # every shipped file parses and validates


# ---------------------------------------------------------------- schedule and optimiser
def test_warmup_cosine_values():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    s = WarmupCosine(opt, base_lr=1e-3, total_steps=110, warmup_steps=10, min_lr=1e-6, warmup_start_lr=1e-6)
    assert s.lr_at(0) == pytest.approx(1e-6)
    assert s.lr_at(5) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)
    assert s.lr_at(10) == pytest.approx(1e-3)
    assert s.lr_at(60) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5)  # half-way through the cosine
    assert s.lr_at(110) == pytest.approx(1e-6)
    assert s.set_step(60) == opt.param_groups[0]["lr"]
    assert scaled_lr(1e-5, 512, "linear", 256) == pytest.approx(2e-5)
    assert scaled_lr(1e-5, 1024, "sqrt", 256) == pytest.approx(2e-5)
    assert scaled_lr(1e-5, 1024, "none", 256) == 1e-5


def test_no_weight_decay_on_1d_params_and_layer_decay():
    model = uniformerv2.create_model("uniformerv2_nano", num_classes=3, num_frames=2)
    groups = param_groups(model, 0.05)
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    shapes = dict((n, p.ndim) for n, p in model.named_parameters())
    assert no_decay == {n for n, d in shapes.items() if d <= 1}
    assert {"cls_token", "balance", "head.fc.bias", "blocks.0.norm1.weight"} <= no_decay
    assert {"pos_embed", "query", "stem.weight", "dpe.0.conv.weight", "head.fc.weight"} <= decay
    opt = build_optimizer(model, 1e-3, layer_decay=0.5)
    lr_of = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
    depth = model.cfg.depth  # 2: stem = layer 0, block i = i + 1, head = depth + 1
    assert lr_of["head.fc.weight"] == pytest.approx(1e-3)
    assert lr_of["blocks.1.attn.qkv.weight"] == pytest.approx(1e-3 * 0.5)
    assert lr_of["stem.weight"] == pytest.approx(1e-3 * 0.5 ** (depth + 1))
    frozen = uniformerv2.create_model("uniformerv2_nano", num_classes=3, num_frames=2, frozen_backbone=True)
    names = {n for g in param_groups(frozen) for n in g["names"]}
    assert not any(n.startswith(("blocks.", "stem", "pos_embed")) for n in names) and "head.fc.weight" in names


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_roundtrip_weights_only_with_every_rng(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = ckpt.rng_state()
    expect = (random.random(), np.random.rand(), torch.rand(1))  # what follows the saved state
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = ckpt.save(tmp_path / "c.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                         "rng": state, "step": 7})
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    loaded = torch.load(path, weights_only=True)
    ckpt.set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand()) == expect[:2] and torch.equal(torch.rand(1), expect[2])
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["weight"], model.weight.detach())
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_keep_last_and_fallback_to_a_readable_checkpoint(tmp_path):
    for s in (1, 2, 3, 4):
        ckpt.save_step(tmp_path, s, {"step": s}, keep_last=2)
    assert [p.name for p in ckpt.step_files(tmp_path)] == ["step_00000003.pt", "step_00000004.pt"]
    (tmp_path / "step_00000004.pt").write_bytes(b"truncated")
    state, path = ckpt.load_latest(tmp_path)
    assert state["step"] == 3 and path.name == "step_00000003.pt"
    torch.save({"x": torch.nn.Linear(1, 1)}, tmp_path / "step_00000005.pt")  # a pickled module: refused
    assert ckpt.load_latest(tmp_path)[0]["step"] == 3


# ---------------------------------------------------------------- samplers
@pytest.mark.parametrize("world,accum", [(2, 1), (4, 1), (2, 2), (1, 4)])
def test_global_batches_do_not_depend_on_processes(world, accum):
    n, gb = 50, 8
    ref = list(TrainSampler(n, gb, 1, 0, 1, seed=3))
    ref_batches = [sorted(ref[i:i + gb]) for i in range(0, len(ref), gb)]
    mb = gb // (world * accum)
    per_rank = [list(TrainSampler(n, gb, accum, r, world, seed=3)) for r in range(world)]
    for b, want in enumerate(ref_batches):
        got = [i for r in range(world) for i in per_rank[r][b * accum * mb:(b + 1) * accum * mb]]
        assert sorted(got) == want
    assert len(ref_batches) == n // gb and len(set(ref)) == len(ref)


def test_sampler_epochs_and_resume_position():
    s = TrainSampler(40, 8, 1, 0, 1, seed=1)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1 and sorted(e0) == sorted(e1) == list(range(40))
    s.set_epoch(1, start_batch=3)
    assert list(s) == e1[24:] and len(s) == 16
    assert torch.equal(epoch_permutation(40, 1, 1), epoch_permutation(40, 1, 1))


def test_shard_sampler_covers_each_item_once():
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3, 4):
            items = [i for r in range(world) for i in ShardSampler(n, r, world)]
            assert sorted(items) == list(range(n))


# ---------------------------------------------------------------- metrics
def test_metrics_match_a_hand_computation():
    # 6 videos, 4 classes; argmax predictions: 0, 1, 1, 2, 3, 0; labels: 0, 1, 2, 2, 1, 3
    scores = torch.tensor([[.9, .05, .03, .02], [.1, .6, .2, .1], [.1, .5, .3, .1],
                           [.2, .1, .6, .1], [.1, .2, .3, .4], [.4, .1, .2, .3]])
    labels = torch.tensor([0, 1, 2, 2, 1, 3])
    m = classification_metrics(scores, labels)
    assert m["top1"] == pytest.approx(100 * 3 / 6)  # videos 0, 1, 3
    # top-5 with 4 classes is always right; check top-2 by hand through the same code path
    assert m["top5"] == pytest.approx(100.0)
    from uniformerv2.engine.metrics import topk_correct
    assert topk_correct(scores, labels, 2).tolist() == [True, True, True, True, False, True]
    # per class: 0: 1/1, 1: 1/2, 2: 1/2, 3: 0/1 -> mean (1 + .5 + .5 + 0) / 4
    assert m["mean_class_accuracy"] == pytest.approx(100 * 2 / 4)
    assert [r["accuracy"] for r in m["per_class"]] == [100.0, 50.0, 50.0, 0.0]
    cm = m["confusion"]
    assert cm.tolist() == [[1, 0, 0, 0], [0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 0, 0]]


def test_view_aggregation_and_video_grouping():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # 1 video, 2 views
    soft = aggregate_views(logits, "softmax")
    expect = (torch.tensor([2.0, 0.0]).softmax(0) + torch.tensor([0.0, 1.0]).softmax(0)) / 2
    assert torch.allclose(soft[0], expect) and soft.sum().item() == pytest.approx(1.0)  # a distribution
    assert torch.allclose(aggregate_views(logits, "logits")[0], torch.tensor([1.0, 0.5]))
    # summed softmax and mean logits can disagree: two mild views of class 0, one very confident of class 1
    logits = torch.tensor([[[2.0, 0.0], [2.0, 0.0], [-10.0, 10.0]]])
    assert aggregate_views(logits, "softmax").argmax().item() == 0  # 0.88 + 0.88 + 0.00 > 0.12 + 0.12 + 1.00
    assert aggregate_views(logits, "logits").argmax().item() == 1   # mean logits -2.0 < 3.33
    keys, s, y = group_by_video(["a", "b", "a"], torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]]),
                                torch.tensor([1, 1, 1]))
    assert keys == ["a", "b"] and s.tolist() == [[1.0, 3.0], [0.0, 1.0]] and y.tolist() == [1, 1]
    with pytest.raises(UserError):
        group_by_video(["a", "a"], torch.zeros(2, 2), torch.tensor([0, 1]))
    assert math.isnan(classification_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))["top1"])
