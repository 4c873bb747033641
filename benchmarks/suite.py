"""The standard table: each workload for ours in every compile mode and, with the official code's file,
the official code on the same weights, side by side in one run.

    python benchmarks/suite.py [--official FILE] [--compile-mode full] [--out table.md]

``benchmarks/gpu_suite.py`` is the whole GPU session (numerics, DPE choice, this table, memory variants,
CUDA graphs, input pipeline) in one script.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from official import bench_official, perturbed_model  # noqa: E402

from uniformerv2 import create_model  # noqa: E402
from uniformerv2.bench import TABLE_HEAD, bench_model, free_memory, header, table_row  # noqa: E402

# (label, preset, batch, train, dtype, options for ours): the workloads of the GPU targets.
SUITE = [
    ("inference B/16 8x224", "k400_b16_8x224", 64, False, "bf16", {}),
    ("inference SSv2 B/16 16x224", "ssv2_b16_16x224", 32, False, "bf16", {}),
    ("inference L/14 8x224", "k400_l14_8x224", 32, False, "bf16", {}),
    ("training B/16 8x224", "k400_b16_8x224", 32, True, "bf16", {}),
    ("training L/14 8x224", "k400_l14_8x224", 16, True, "bf16", {}),
]


def run_suite(rows=None, *, compile_modes=("none", "full"), official: str | None = None,
              official_compile: bool = False, device: str | None = None, warmup: int = 2, iters: int = 5,
              dpe: str = "auto", budget_s: float | None = None, echo=print) -> list[str]:
    """Markdown lines of the table.  Rows that would start after ``budget_s`` seconds are listed as
    skipped; a row that fails is listed with its error (the rest of the table is kept).  ``rows`` items
    are :data:`SUITE` tuples (options may hold ``grad_ckpt`` and ``ckpt_policy``)."""
    rows = SUITE if rows is None else rows
    t0 = time.perf_counter()
    lines = [TABLE_HEAD]
    echo(TABLE_HEAD)

    def emit(line):
        lines.append(line)
        echo(line)

    for label, preset, bs, train, dtype, opts in rows:
        ref = None
        runs = [("official", "none")] + ([("official", "full")] if official_compile else []) if official else []
        runs += [("ours", m) for m in compile_modes]
        for impl, mode in runs:
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                emit(f"| {label} | {impl} | {bs} | {dtype} | {mode} | skipped (time budget) | | |")
                continue
            try:
                if impl == "official":
                    r = bench_official(official, preset, bs, dtype, train=train, compile=mode, device=device,
                                       warmup=warmup, iters=iters, ours=perturbed_model(preset))
                else:
                    r = bench_model(create_model(preset), bs, dtype, train=train, compile=mode, device=device,
                                    warmup=warmup, iters=iters, dpe=opts.get("dpe", dpe),
                                    grad_ckpt=opts.get("grad_ckpt", 0),
                                    ckpt_policy=opts.get("ckpt_policy", "branches"))
            except Exception as e:  # noqa: BLE001 - one failing row must not lose the table
                emit(f"| {label} | {impl} | {bs} | {dtype} | {mode} | failed: {type(e).__name__}: "
                     f"{' '.join(str(e).split())[:120]} | | |")
                free_memory()
                continue
            if impl == "official" and mode == "none":
                ref = r
            name = impl
            if impl == "ours" and opts.get("grad_ckpt"):
                name += f" (ckpt {opts['grad_ckpt']} {opts.get('ckpt_policy') or 'branches'})"
            emit(table_row(label, name, bs, dtype, r, None if impl == "official" and mode == "none" else ref))
            free_memory()
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", metavar="FILE", help="official slowfast/models/uniformerv2_model.py")
    p.add_argument("--compile-mode", default="full")
    p.add_argument("--device", default=None)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", metavar="FILE")
    args = p.parse_args(argv)
    lines = [header()]
    print(lines[0])
    lines += run_suite(compile_modes=("none", args.compile_mode), official=args.official, device=args.device,
                       warmup=args.warmup, iters=args.iters)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
