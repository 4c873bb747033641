"""The training state and one optimiser step: ``TrainState`` round trips through a checkpoint file, and
``train_step`` against a hand-written mean-loss / clipping / AdamW / EMA step on the real nano model."""
from __future__ import annotations

import copy
import math
import random

import numpy as np
import torch

import uniformerv2
from uniformerv2.engine import checkpoint as ckpt
from uniformerv2.engine.optim import EMA, build_optimizer
from uniformerv2.engine.schedule import WarmupCosine
from uniformerv2.engine.state import TrainState
from uniformerv2.engine.train import train_step

# what a checkpoint file holds (the layout written since the first release; old runs must keep resuming)
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "scaler", "ema", "step", "epoch", "batch_in_epoch",
                   "counters", "best", "rng", "world_size"}


def nano(seed: int):
    torch.manual_seed(seed)
    return uniformerv2.create_model("uniformerv2_nano", num_classes=3, num_frames=2, head_dropout=0.0,
                                    global_mlp_dropout=0.0)


def make_state(seed: int, lr: float = 1e-2, ema_decay: float = 0.5, fp16_scaler: bool = False) -> TrainState:
    model = nano(seed).train()
    opt = build_optimizer(model, lr, weight_decay=0.05)
    sched = WarmupCosine(opt, lr, total_steps=10, warmup_steps=0, min_lr=1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=fp16_scaler)
    return TrainState(model, opt, sched, scaler, EMA(model, ema_decay))


def clips(n: int, seed: int, skipped: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randn(n, 3, 2, 32, 32, generator=g), "label": torch.randint(0, 3, (n,), generator=g),
            "skipped": [f"bad{i}.mp4" for i in range(skipped)]}


def assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_train_state_round_trips_every_field_through_a_file(tmp_path):
    a = make_state(seed=1, fp16_scaler=True)  # an enabled GradScaler: its scale and growth tracker are saved
    batches = iter([clips(2, 0), clips(2, 1, skipped=1), clips(2, 2)])
    for _ in range(3):
        train_step(a, batches, forward=a.model, device=torch.device("cpu"))
    a.epoch, a.batch_in_epoch, a.best = 1, 2, {"top1": 66.5, "step": 2}
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    saved = a.state_dict()
    assert set(saved) == CHECKPOINT_KEYS and saved["step"] == 3 and saved["counters"]["skipped_videos"] == 1
    path = ckpt.save(tmp_path / "step_00000003.pt", saved)
    after = (random.random(), np.random.rand(), torch.rand(2))  # what the saved RNG states draw next

    b = make_state(seed=2, ema_decay=0.9, fp16_scaler=True)  # other weights, fresh optimiser, other EMA decay
    assert not torch.equal(b.model.head.fc.weight, a.model.head.fc.weight)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    b.load_state_dict(torch.load(path, weights_only=True))
    assert_same(a.state_dict(), b.state_dict())  # every field, tensors bit-equal, the RNGs included
    assert (random.random(), np.random.rand()) == after[:2] and torch.equal(torch.rand(2), after[2])
    assert (b.step, b.epoch, b.batch_in_epoch, b.best) == (3, 1, 2, {"top1": 66.5, "step": 2})
    assert b.ema.decay == 0.5 and b.scaler.get_scale() == a.scaler.get_scale()
    assert b.optimizer.param_groups[0]["lr"] == a.optimizer.param_groups[0]["lr"]


def hand_adamw(params, grads, m, v, t, lr, wds, betas=(0.9, 0.999), eps=1e-8):
    """AdamW, written from the paper (Loshchilov & Hutter), in float64."""
    out = []
    for i, (p, g, wd) in enumerate(zip(params, grads, wds)):
        m[i] = betas[0] * m[i] + (1 - betas[0]) * g
        v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
        m_hat, v_hat = m[i] / (1 - betas[0] ** t), v[i] / (1 - betas[1] ** t)
        out.append(p * (1 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps))
    return out


def test_train_step_matches_a_hand_written_step():
    state = make_state(seed=3, lr=1e-2, ema_decay=0.5)
    ref = copy.deepcopy(state.model)
    names = [n for n, p in ref.named_parameters() if p.requires_grad]
    wds = [0.0 if p.ndim <= 1 else 0.05 for p in ref.parameters() if p.requires_grad]
    params = [p.detach().double().clone() for p in ref.parameters() if p.requires_grad]
    ema = [p.clone() for p in params]
    m, v = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    clip_grad = 0.5
    # step 1: micro-batches of 3 and 2 clips (one more was undecodable); step 2: this rank's whole share of
    # the first micro-step failed to decode (a zero-weight dummy clip stands in); step 3: a NaN loss
    steps = [[clips(3, 10), clips(2, 11, skipped=1)],
             [{"video": None, "label": torch.zeros(0, dtype=torch.long), "skipped": ["a.mp4", "b.mp4"]},
              clips(4, 12)],
             [clips(2, 13), {**clips(2, 14), "video": torch.full((2, 3, 2, 32, 32), float("nan"))}]]
    for t, micro in enumerate(steps, start=1):
        before = {n: p.detach().clone() for n, p in state.model.named_parameters()}
        res = train_step(state, iter(micro), forward=state.model, device=torch.device("cpu"), accum_steps=2,
                         clip_grad=clip_grad)
        # the reference: each micro-step's summed cross-entropy / its clip count / accum_steps
        ref.zero_grad(set_to_none=True)
        loss_sum = correct = count = 0.0
        for b in micro:
            if b["video"] is None:
                continue
            logits = ref(b["video"])
            ce = torch.nn.functional.cross_entropy(logits, b["label"], reduction="sum")
            (ce * (1.0 / len(b["label"]) / 2)).backward()
            loss_sum, correct = loss_sum + ce.item(), correct + (logits.argmax(1) == b["label"]).sum().item()
            count += len(b["label"])
        assert res.count == count and res.correct == correct
        assert math.isclose(res.lr, 1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * (t - 1) / 10)) / 2)  # cosine
        assert math.isclose(res.loss, loss_sum, rel_tol=1e-6) if t < 3 else math.isnan(res.loss)
        if t == 3:  # skipped: no weight moves, counted
            assert not res.ok and state.counters["bad_steps"] == state.counters["consecutive_bad"] == 1
            assert all(torch.equal(p, before[n]) for n, p in state.model.named_parameters())
            break
        grads = [p.grad.detach().double() for p in ref.parameters() if p.requires_grad]
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        assert res.ok and math.isclose(res.grad_norm, norm, rel_tol=1e-5)
        assert norm > clip_grad  # clipping is active
        grads = [g * (clip_grad / (norm + 1e-6)) for g in grads]
        params = hand_adamw(params, grads, m, v, t, res.lr, wds)
        ema = [0.5 * e + 0.5 * p for e, p in zip(ema, params)]
        got = dict(state.model.named_parameters())
        for n, p, e in zip(names, params, ema):
            assert torch.allclose(got[n].double(), p, rtol=0, atol=1e-6), n
            assert torch.allclose(state.ema.shadow[n].double(), e, rtol=0, atol=1e-6), n
        assert max((got[n].double() - before[n].double()).abs().max().item() for n in names) > 5e-3  # it moved
        with torch.no_grad():  # the reference continues from the same float32 weights
            for n, p in ref.named_parameters():
                p.copy_(got[n])
    assert state.step == state.batch_in_epoch == 3 and state.counters["skipped_videos"] == 3


def test_a_non_finite_loss_is_skipped_under_the_fp16_scaler():
    state = make_state(seed=4, fp16_scaler=True)
    before = copy.deepcopy(state.model.state_dict())
    scale = state.scaler.get_scale()
    nan = {**clips(2, 0), "video": torch.full((2, 3, 2, 32, 32), float("nan"))}
    res = train_step(state, iter([nan]), forward=state.model, device=torch.device("cpu"))
    assert not res.ok and state.counters["bad_steps"] == state.counters["consecutive_bad"] == 1
    assert state.counters["overflow_steps"] == 0 and state.scaler.get_scale() == scale / 2  # backed off
    params = dict(state.model.named_parameters())
    assert all(torch.equal(p, before[n]) for n, p in params.items())
    res = train_step(state, iter([clips(2, 1)]), forward=state.model, device=torch.device("cpu"))
    assert res.ok and state.counters["consecutive_bad"] == 0 and state.step == 2
