"""Checks that need a CUDA device (skipped elsewhere): mixed-precision and compiled training through the
real loop, and the speed paths' numerics on the GPU.  On a GPU machine: ``pytest tests/test_gpu.py
tests/test_triton_dpe.py``."""
from __future__ import annotations

import copy
import json

import pytest
import torch

import uniformerv2 as u
from test_engine_support import ToyClips, toy_config
from test_model import perturb_
from uniformerv2.accel import optimize
from uniformerv2.engine import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("precision,compile", [("bf16", False), ("fp16", False), ("bf16", True)])
def test_training_learns_on_the_gpu(tmp_path, precision, compile):
    cfg = toy_config(epochs=4, eval_every=4, precision=precision, device="cuda", compile=compile)
    s = train(cfg, tmp_path / "run", datasets={"train": ToyClips(64), "val": ToyClips(32, seed=1),
                                               "test": ToyClips(24, seed=2)})
    steps = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
             if "loss" in r]
    assert s["steps"] == 32 and all(r["loss"] == r["loss"] for r in steps)  # no NaN step
    assert sum(r["loss"] for r in steps[-4:]) < 0.6 * sum(r["loss"] for r in steps[:4])
    assert s["test"]["top1"] >= 90.0


def test_speed_paths_agree_on_the_gpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        model = perturb_(u.create_model("tiny_ssv2_8x64", num_classes=50), scale=0.1).eval().cuda()
        video = torch.randn(4, 3, 8, 64, 64, device="cuda")
        with torch.inference_mode():
            ref = model(video)
            assert ref.std() > 0.1
            with torch.autocast("cuda", dtype=torch.bfloat16):
                assert _rel(model(video), ref) < 0.02
            native = optimize(copy.deepcopy(model).to(torch.bfloat16), for_inference=True)
            assert _rel(native(video.to(torch.bfloat16)), ref) < 0.02
            for inplace in (True, False):
                fast = optimize(copy.deepcopy(model), for_inference=True, inplace=inplace, dpe="triton")
                assert _rel(fast(video), ref) < 1e-5, inplace
            torch._dynamo.reset()
            assert _rel(torch.compile(copy.deepcopy(model))(video), ref) < 1e-4
            torch._dynamo.reset()
            graphed = torch.compile(copy.deepcopy(model), mode="reduce-overhead")
            for _ in range(3):  # warm-up, record, replay
                out = graphed(video).clone()
            assert _rel(out, ref) < 1e-4
    finally:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch._dynamo.reset()


@pytest.mark.parametrize("policy", ["branches", "block", "save_attention"])
def test_checkpointing_and_triton_dpe_gradients_on_the_gpu(policy):
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        base = perturb_(u.create_model("tiny_ssv2_8x64", num_classes=10), scale=0.1).train().cuda()
        lean = optimize(copy.deepcopy(base), for_inference=False, dpe="triton", grad_checkpointing=True,
                        checkpoint_policy=policy)
        video = torch.randn(2, 3, 8, 64, 64, device="cuda")
        grads = []
        for m in (base, lean):
            torch.manual_seed(0)  # same drop-path draws
            m(video).square().sum().backward()
            grads.append([p.grad for p in m.parameters()])
        for a, b in zip(*grads):
            if a is not None:
                assert _rel(b, a) < 1e-4 or a.norm() < 1e-8
    finally:
        torch.backends.cuda.matmul.allow_tf32 = True
