"""Batch-1 fp32 inference on this CPU: the official code, our reference model, our optimized model.

Columns: latency of each (best of ``--iters``), ours / official latency ratios (< 1: ours is faster) for the
reference model, the optimized model (``accel.optimize(for_inference=True)``, what ``predict`` runs) and the
optimized model without its in-place blocks (``inplace=False``), and the optimized model's CPU-time ratio.

    python benchmarks/cpu_vs_official.py --official path/to/uniformerv2_model.py [--preset P] [--iters N]

All three run in one process, in turn, on the same perturbed weights (logits checked against the official
code first); each side's best wall time and best CPU time are reported, with latency ratios ours/official.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from official import compare_on_cpu  # noqa: E402

from uniformerv2.bench import header, threads  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", required=True, metavar="FILE", help="official slowfast/models/uniformerv2_model.py")
    p.add_argument("--preset", action="append", help="preset(s) (default: k400_b16_8x224 and ssv2_b16_16x224)")
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    with threads(args.threads):
        print(header())
        print("| preset | official ms | reference ms | optimized ms | reference / official | optimized / official "
              "| optimized, no in-place / official | CPU time: optimized / official | max logit diff |")
        print("|---|---|---|---|---|---|---|---|---|")
        for preset in args.preset or ["k400_b16_8x224", "ssv2_b16_16x224"]:
            r = compare_on_cpu(args.official, preset, iters=args.iters)
            print(f"| {preset} | {r['official_ms']:.0f} | {r['reference_ms']:.0f} | {r['optimized_ms']:.0f} | "
                  f"{r['reference_latency_ratio']:.2f} | {r['optimized_latency_ratio']:.2f} | "
                  f"{r['no_inplace_latency_ratio']:.2f} | {r['optimized_cpu_ratio']:.2f} | "
                  f"{r['optimized_max_abs_logit_diff']:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
