"""``uniformerv2 features PATH... --model M --out DIR``: save pre-head features per video or per window; in
parallel, over several processes under torchrun, resumable."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError
from .predict import (add_input_args, add_model_args, add_run_args, add_window_args, check_run_args, collect,
                      load_classifier, run_signature, setup_processes)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "features", help="extract pre-head video features (per video or per window)",
        description="Write the fused pre-head feature of each video (mean over the test views; per window "
                    "with --window) to DIR, mirroring the layout of input folders, with manifest.jsonl "
                    "(status of every input). Decoding runs in --workers processes; torchrun spreads the "
                    "list over processes; --resume continues a killed run. Exit code 1 when some inputs could "
                    "not be read.")
    add_input_args(p)
    add_model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", choices=["safetensors", "npy"],
                   help="file format (default: safetensors, which also keeps per-view features; when resuming, "
                        "the run's)")
    add_window_args(p)
    add_run_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..inference.inputs import output_names
    from ..inference.run import run_dataset

    check_run_args(args)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is not a folder")
    found = collect(args)
    videos, names = [str(v) for v, _ in found], output_names(found)
    rank, _, device, cleanup = setup_processes(args)
    try:
        clf = load_classifier(args, device)
        report = run_dataset(clf, videos, out_dir, task="features", names=names, views=args.views,
                             window=args.window, stride=args.stride, fmt=args.format, workers=args.workers,
                             batch_size=args.batch_size, resume=args.resume, retry_failed=args.retry_failed,
                             overwrite=args.overwrite, signature=run_signature(args), progress=not args.quiet)
    finally:
        cleanup()
    if rank != 0:
        return 1 if report.failed else 0
    if report.resumed:
        print(f"resumed: {report.resumed} inputs recorded earlier were skipped", file=sys.stderr)
    done = len(report.records) - report.failed
    print(f"wrote {done} feature files and {out_dir / 'manifest.jsonl'}", file=sys.stderr)
    if report.failed:
        print(f"uniformerv2: {report.failed} of {len(report.records)} inputs failed", file=sys.stderr)
    print(report.stats.line(), file=sys.stderr)
    return 1 if report.failed else 0
