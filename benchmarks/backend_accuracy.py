"""Accuracy cost of the engine's CPU backends: a tiny_ssv2_8x64 trained on the synthetic temporal-order task (the
demo's recipe, with fewer clips and epochs by default), its test split classified through the torch, ONNX Runtime
fp32 and ONNX Runtime int8 backends: top-1 of each, top-1 agreement with torch and with fp32, the largest
probability difference to torch. The data, the run and the ONNX files stay in --workdir (reused when present).

    python benchmarks/backend_accuracy.py --workdir build/backend_accuracy --videos-per-class 100 --epochs 12
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, metavar="DIR")
    p.add_argument("--videos-per-class", type=int, default=100, metavar="N")
    p.add_argument("--epochs", type=int, default=12, metavar="N")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="torch threads while training")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    import uniformerv2.demo as demo
    from uniformerv2 import synth
    from uniformerv2.data import ClipCache
    from uniformerv2.engine.recipes import synthetic_recipe
    from uniformerv2.factory import load_model
    from uniformerv2.inference import VideoClassifier

    out = Path(args.workdir)
    data, run = out / "data", out / "run"
    t0 = time.time()
    if not (data / "test.csv").exists():
        synth.generate(data, videos_per_class=args.videos_per_class, seed=0, progress=False)
    if not (run / "final").exists():
        cache = ClipCache()
        for split in ("train", "val", "test"):
            demo._decode_into(cache, data, split)
        cfg = synthetic_recipe(data, epochs=args.epochs, seed=0, model=demo.MODELS["uniformerv2"], num_workers=0,
                               progress=False, absolute=False)
        demo.THREADS = args.threads
        s = demo._train_one(cfg, run, cache)
        print(f"trained in {time.time() - t0:.0f} s: test top-1 {s['test']['top1']:.2f}", flush=True)
    rows = [line.rsplit(",", 1) for line in (data / "test.csv").read_text().splitlines() if line.strip()]
    paths, labels = [str(data / p) for p, _ in rows], np.array([int(y) for _, y in rows])
    probs = {}
    for name, kw in (("torch", {}), ("onnxruntime", {"backend": "onnxruntime"}),
                     ("onnxruntime int8", {"backend": "onnxruntime", "quantize": "int8"})):
        clf = VideoClassifier(load_model(run / "final"), device="cpu", cache=out / "onnx", **kw)
        probs[name] = np.stack([r.probs for r in clf.predict_many(paths, workers=0)])
    ref, fp32 = probs["torch"].argmax(1), probs["onnxruntime"].argmax(1)
    result = {name: {"top1": float(100 * (p.argmax(1) == labels).mean()),
                     "agreement_with_torch": float(100 * (p.argmax(1) == ref).mean()),
                     "agreement_with_fp32": float(100 * (p.argmax(1) == fp32).mean()),
                     "max_prob_diff": float(np.abs(p - probs["torch"]).max())} for name, p in probs.items()}
    print(f"{len(paths)} test videos, torch {torch.__version__}")
    print("| backend | top-1 | top-1 agreement with torch | with fp32 | max prob diff to torch |")
    print("|---|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['top1']:.2f} | {r['agreement_with_torch']:.1f}% | {r['agreement_with_fp32']:.1f}% "
              f"| {r['max_prob_diff']:.2g} |")
    (out / "summary.json").write_text(json.dumps({"videos": len(paths), "result": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
