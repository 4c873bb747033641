"""fp32 inference on this CPU: the official code beside our reference model, our optimized model and the engine's
onnxruntime backend (fp32 and int8 weights).

Columns: latency of each side, ours / official latency ratios (< 1: ours is faster) and the largest logit
difference to the official code. Sides (``--sides``): ``reference`` (our reference model), ``optimized``
(``accel.optimize(for_inference=True)``, the torch backend: what ``predict`` runs), ``no_inplace`` (the optimized
model without its in-place blocks), ``onnxruntime`` and ``int8`` (the cached ONNX file of the engine's onnxruntime
backend under ONNX Runtime, fp32 / int8 weights).

    python benchmarks/cpu_vs_official.py --official path/to/uniformerv2_model.py [--preset P] [--iters N]
    python benchmarks/cpu_vs_official.py --official FILE --sides optimized onnxruntime int8 --batch 1 engine \\
        --reduce median --iters 3

All sides run in one process, in turn (each round runs every side once, after one untimed round that checks
the logits against the official code), on the same perturbed weights. ``--batch engine``: the views per forward
pass the inference engine uses for the preset's test views (``Engine.views_per_pass``), where the table gives
views per second as well.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from official import SIDES, compare_on_cpu, engine_batch  # noqa: E402

from uniformerv2.bench import header, threads  # noqa: E402
from uniformerv2.bench.common import environment, load_text, write_json  # noqa: E402

NAMES = {"reference": "reference", "optimized": "optimized (torch backend)", "no_inplace": "optimized, no in-place",
         "onnxruntime": "ONNX Runtime fp32", "int8": "ONNX Runtime int8"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", required=True, metavar="FILE", help="official slowfast/models/uniformerv2_model.py")
    p.add_argument("--preset", action="append", help="preset(s) (default: k400_b16_8x224 and ssv2_b16_16x224)")
    p.add_argument("--sides", nargs="+", choices=list(NAMES), default=[s for s in SIDES if s != "official"],
                   help="what runs beside the official code (default: %(default)s)")
    p.add_argument("--batch", nargs="+", default=["1"], metavar="N|engine",
                   help="views per forward pass, one table row each ('engine': the engine's; default: 1)")
    p.add_argument("--iters", type=int, default=4, help="timed rounds (default: %(default)s)")
    p.add_argument("--reduce", choices=["min", "median"], default="min", help="over the rounds (default: min)")
    p.add_argument("--cache", metavar="DIR", help="the ONNX files' folder (default: the cache folder)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-o", "--output", metavar="FILE", help="also write every figure as JSON")
    args = p.parse_args(argv)
    reduce = min if args.reduce == "min" else statistics.median
    rows = []
    with threads(args.threads):
        print(header())
        cols = " | ".join(f"{NAMES[s]} ms" for s in args.sides)
        ratios = " | ".join(f"{NAMES[s]} / official" for s in args.sides)
        print(f"| preset | batch | official ms | {cols} | {ratios} | max logit diff ({', '.join(args.sides)}) |")
        print("|---|---|---|" + "---|" * (2 * len(args.sides) + 1))
        for preset in args.preset or ["k400_b16_8x224", "ssv2_b16_16x224"]:
            for b in args.batch:
                size = engine_batch(preset) if b == "engine" else int(b)
                r = compare_on_cpu(args.official, preset, batch_size=size, iters=args.iters,
                                   sides=["official", *args.sides], cache=args.cache, reduce=reduce)
                r["load"] = load_text()
                rows.append(r)
                tag = f"{size} (engine)" if b == "engine" else str(size)
                ms = " | ".join(f"{r[f'{s}_ms']:.0f}" for s in args.sides)
                rat = " | ".join(f"**{r[f'{s}_latency_ratio']:.2f}**" for s in args.sides)
                diff = ", ".join(f"{r[f'{s}_max_abs_logit_diff']:.1e}" for s in args.sides)
                print(f"| {preset} | {tag} | {r['official_ms']:.0f} | {ms} | {rat} | {diff} |", flush=True)
        env = environment()
    if args.output:
        write_json(args.output, {"benchmark": "cpu_vs_official", "options": vars(args), "environment": env,
                                 "rows": rows})
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
