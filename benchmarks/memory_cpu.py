"""Training memory and time of the training variants on this CPU: activation checkpointing policies and the
lean MLP, for one training step (forward, backward) of a model at batch B.

    python benchmarks/memory_cpu.py [--preset k400_b16_8x224] [--batch-size 1]

Each variant runs in a fresh process and takes one step: memory = the step's peak RSS minus the RSS before
it (the activations kept for backward, the gradients and what the first call allocates, the last being the
same for every variant); time = process CPU time of the step (recomputation shows up here). There is no
warm-up step on purpose: a process's peak RSS never comes down, so a second step would only show what the
first one had already reached.
"""
from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="k400_b16_8x224")
    p.add_argument("--batch-size", type=int, default=1)
    args = p.parse_args(argv)
    import uniformerv2 as u

    depth = u.create_model(args.preset).cfg.depth
    print(f"{args.preset}, batch {args.batch_size}, fp32, one training step (forward + backward) per process")
    print("| variant | step peak memory above the model (MiB) | step CPU time (s) |")
    print("|---|---|---|")
    for name, lean, n, policy in VARIANTS:
        out = subprocess.run([sys.executable, "-c", CHILD, args.preset, str(args.batch_size), str(lean),
                              str(depth if n < 0 else n), policy], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {name} | {r['extra_peak_mb']:.0f} | {r['cpu_s']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
