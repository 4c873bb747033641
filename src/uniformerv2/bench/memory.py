"""Training memory and time of the training variants on this CPU (``uniformerv2 bench memory``): activation
checkpointing policies and the lean MLP, for one forward and backward pass of a model at batch B.

Each variant runs in a fresh process and takes one step: memory = the step's peak RSS minus the RSS before
it (the activations kept for backward, the gradients and what the first call allocates, the last being the
same for every variant); time = process CPU time of the step (recomputation shows up here). There is no
warm-up step on purpose: a process's peak RSS never comes down, so a second step would only show what the
first one had already reached.
"""
from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
import uniformerv2 as u
from uniformerv2.accel import optimize
preset, batch, lean, n, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4]), sys.argv[5]
model = u.create_model(preset).train()
optimize(model, for_inference=False, lean_mlp=lean, grad_checkpointing=n, checkpoint_policy=policy)
cfg = model.cfg
video = torch.randn(batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size)
def step():
    model(video).float().square().sum().backward()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
before = rss()
c0 = time.process_time()
step()
cpu = time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"extra_peak_mb": (peak - before) / 2**20, "cpu_s": cpu}))
"""

VARIANTS = [("reference MLP, no checkpointing", 0, 0, "branches"),
            ("lean MLP, no checkpointing", 1, 0, "branches"),
            ("lean MLP, checkpoint all: save_attention", 1, -1, "save_attention"),
            ("lean MLP, checkpoint all: branches", 1, -1, "branches"),
            ("lean MLP, checkpoint all: block", 1, -1, "block")]


def bench_memory(preset: str = "k400_b16_8x224", batch_size: int = 1, variants=None, verbose: bool = True) -> dict:
    """One fresh process per variant of ``VARIANTS`` (or the ``variants`` named): the step's peak memory above
    the RSS before it, in MiB, and its CPU seconds."""
    from ..errors import UserError
    from ..factory import create_model

    names = [v[0] for v in VARIANTS]
    chosen = VARIANTS if variants is None else [v for v in VARIANTS if v[0] in variants]
    if variants is not None and len(chosen) != len(set(variants)):
        raise UserError(f"variants must be some of {names}, got {list(variants)}")
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    depth = create_model(preset).cfg.depth
    rows = []
    for name, lean, n, policy in chosen:
        blocks = depth if n < 0 else n
        out = subprocess.run([sys.executable, "-c", CHILD, preset, str(batch_size), str(lean), str(blocks), policy],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"variant {name!r} failed: {out.stderr.strip()[-500:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"variant": name, "lean_mlp": bool(lean), "checkpointed_blocks": blocks, "policy": policy, **r})
        if verbose:
            print(memory_table({"rows": rows[-1:]})[-1], file=sys.stderr, flush=True)
    return {"preset": preset, "batch_size": batch_size, "depth": depth, "rows": rows}


def memory_table(result: dict) -> list[str]:
    return ["| variant | step peak memory above the model (MiB) | step CPU time (s) |", "|---|---|---|"] + [
        f"| {r['variant']} | {r['extra_peak_mb']:.0f} | {r['cpu_s']:.1f} |" for r in result["rows"]]
