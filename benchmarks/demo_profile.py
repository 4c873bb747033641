"""Where a training step of the demo (``make demo``) spends its time: CPU seconds per component.

    python benchmarks/demo_profile.py [--videos-per-class 20] [--json out.json]

Components, each timed alone with ``time.process_time`` (CPU time of this process, so that other load on
the machine inflates it less than wall time): rendering and H.264-encoding a synthetic clip, decoding the
8 sampled frames of a clip (what a DataLoader worker does for every clip of every epoch) or all 16 once
(what ``ClipCache`` does), the training transform, ``collate``, the first batch of a fresh DataLoader
iterator with one worker (what non-persistent workers pay each epoch and each validation), the
model's optimiser step at the demo's batch of 8 on 1 and 2 threads (wall and CPU), and the evaluation
forward pass.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timed(fn, n: int) -> dict:
    """Wall and CPU milliseconds per call of ``fn`` (after one warm-up call)."""
    fn()
    w, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return {"wall_ms": round((time.perf_counter() - w) / n * 1e3, 2), "cpu_ms": round((time.process_time() - c) / n * 1e3, 2)}


def main(videos_per_class: int = 20) -> dict:
    from uniformerv2 import demo, synth
    from uniformerv2.data import ClipCache, collate, read_clip
    from uniformerv2.engine import load_config
    from uniformerv2.engine.data import build_datasets, make_train_loader
    from uniformerv2.engine.distributed import DistInfo
    from uniformerv2.engine.optim import build_optimizer
    from uniformerv2.engine.recipes import synthetic_recipe
    from uniformerv2.factory import create_model

    res = {"load_before": open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else None}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synth.generate(data, videos_per_class=videos_per_class, seed=0, progress=False, workers=1)
        clip = synth.render_clip("moving right", 0)
        res["render_clip"] = timed(lambda: synth.render_clip("moving right", 1), 20)
        res["encode_clip"] = timed(lambda: synth.write_mp4(Path(tmp) / "x.mp4", clip), 20)
        cfg = load_config(synthetic_recipe(data, epochs=12, seed=0, model=demo.MODELS["uniformerv2"], num_workers=0,
                                           progress=False, absolute=False))  # as the demo makes it
        m = cfg["model"]
        dc = create_model(m["preset"], **m["options"]).data_config.replace(**cfg["data"]["pipeline"])
        plain = build_datasets(cfg, dc, ("train", "val"), None, 6)
        cached = build_datasets(cfg, dc, ("train",), None, 6, cache=ClipCache())
        train, items = plain["train"], plain["train"].items
        k = iter(range(10**9))
        res["decode_8_of_16"] = timed(lambda: read_clip(items[next(k) % len(items)].path,
                                                        lambda n: np.arange(1, n, 2), "pyav"), 50)
        res["decode_all_16"] = timed(lambda: read_clip(items[next(k) % len(items)].path, np.arange, "pyav"), 50)
        frames = torch.from_numpy(read_clip(items[0].path, lambda n: np.arange(1, n, 2), "pyav")[0])
        res["train_transform"] = timed(lambda: train.transform(frames, generator=torch.Generator().manual_seed(0)),
                                       100)
        res["dataset_item_decoding"] = timed(lambda: train[next(k) % len(train)], 50)
        cached["train"].preload()
        res["dataset_item_cached"] = timed(lambda: cached["train"][next(k) % len(train)], 200)
        batch = [train[i] for i in range(8)]
        res["collate_8"] = timed(lambda: collate(batch), 50)
        for workers in (1, 0):
            cfg["data"]["num_workers"] = workers
            loader, sampler = make_train_loader(train, cfg, DistInfo(0, 1))
            w = time.perf_counter()
            next(iter(loader))
            res[f"first_batch_{workers}_workers_ms"] = round((time.perf_counter() - w) * 1e3, 1)
        val = plain["val"]
        res["val_item_decoding"] = timed(lambda: val[next(k) % len(val)], 50)

    x, y = torch.randn(8, 3, 8, 64, 64), torch.randint(0, 6, (8,))
    for name, spec in demo.MODELS.items():
        torch.manual_seed(0)
        model = create_model(spec["preset"], **{**spec["options"], "num_classes": 6})
        opt = build_optimizer(model, 1e-3)

        def step():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
            opt.step()
        for threads in (1, 2):
            torch.set_num_threads(threads)
            res[f"{name}_train_step_8_{threads}_threads"] = timed(step, 10)
        torch.set_num_threads(1)
        model.eval()
        x16 = torch.randn(16, 3, 8, 64, 64)
        with torch.no_grad():
            res[f"{name}_eval_forward_16"] = timed(lambda: model(x16), 5)
    res["load_after"] = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else None
    return res


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos-per-class", type=int, default=20)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    result = main(args.videos_per_class)
    for key, value in result.items():
        print(f"{key:<40} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
