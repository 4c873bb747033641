"""``uniformerv2 prepare LIST_OR_DIR --output DIR``: transcode a dataset for fast sparse reading in training.

Every video is re-encoded (H.264, short side 320 unless smaller, a keyframe every 8 frames, non-reference
B-frames, CRF 14 tuned for fidelity and decoding speed, no audio) so that frame i of the prepared file is frame i
of the source; a training clip then costs a few decoded frames per sampled frame. Worker processes; resumable
(finished outputs are skipped, files are written under a temporary name and renamed); sources are never touched.
Writes the new list (same lines and labels, paths of the prepared files) and ``<list>.prepare.json``: per file
done / skipped / failed with the reason, bytes before and after, time, and the mean PSNR against the source
on a sample. Exit code 0 if every video was prepared, 1 if some failed.
"""
from __future__ import annotations

import sys

from ..errors import UserError
from .common import add_output, add_quiet, add_workers


def add_parser(subparsers):
    p = subparsers.add_parser("prepare", help="transcode a dataset for fast sparse reading in training",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("source", metavar="LIST_OR_DIR", help="video list file, or a folder (class sub-folders)")
    add_output(p, required=True, aliases=("--out",), help="output folder (prepared videos, list, report)")
    p.add_argument("--root", default="", help="folder the list's relative paths are in (default: as written)")
    p.add_argument("--sep", default=None, help="field separator of the list file (default: ',' or spaces)")
    add_workers(p, "processes that transcode videos")
    p.add_argument("--short-side", type=int, default=320, help="short side in pixels, never enlarged (default 320)")
    p.add_argument("--keep-size", action="store_true", help="keep the stored frame size")
    p.add_argument("--keyframe-interval", type=int, default=None, metavar="N",
                   help="frames between keyframes (default 8, from `bench prepare`)")
    p.add_argument("--all-intra", action="store_true", help="every frame a keyframe (fastest reads, largest files)")
    p.add_argument("--crf", type=float, default=None, help="x264 constant quality (default 14; lower: better)")
    x264 = p.add_argument("--x264-preset", "--preset", dest="x264_preset", default=None, metavar="NAME",
                          help="x264 speed preset: ultrafast ... veryslow (default veryfast)")
    x264.hidden_aliases = {"--preset"}   # the old spelling; --preset is a model preset everywhere else
    p.add_argument("--lossless", action="store_true", help="lossless RGB H.264 (exact frames, large files)")
    p.add_argument("--psnr-sample", type=int, default=16, metavar="N",
                   help="files whose PSNR against the source is measured (8 frames each; default 16, 0: none)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per file (default 3600)")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.transcode import PrepareSettings, prepare_dataset

    if args.all_intra and args.keyframe_interval not in (None, 1):
        raise UserError("--all-intra and --keyframe-interval contradict each other")
    defaults = PrepareSettings()
    settings = PrepareSettings(
        short_side=None if args.keep_size else args.short_side,
        keyframe_interval=1 if args.all_intra else (args.keyframe_interval or defaults.keyframe_interval),
        crf=defaults.crf if args.crf is None else args.crf, preset=args.x264_preset or defaults.preset,
        lossless=args.lossless)
    report = prepare_dataset(args.source, args.output, root=args.root, sep=args.sep, settings=settings, workers=args.workers,
                     psnr_sample=args.psnr_sample, timeout=args.timeout, progress=not args.quiet)
    before, after = report["bytes_before"], report["bytes_after"]
    ratio = f" (x{after / before:.2f})" if before else ""
    psnr = report["psnr"]
    quality = (f"; PSNR vs source {psnr['mean']:.1f} dB (min {psnr['min']:.1f}) on {psnr['files']} files"
               if psnr["mean"] is not None else "")
    print(f"{report['done']} prepared, {report['skipped']} already there, {report['failed']} failed of "
          f"{report['total']}; {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB{ratio}{quality}; "
          f"{report['seconds']:.1f} s")
    if report.get("list"):
        print(f"list: {report['list']}", file=sys.stderr)
    print(f"report: {report['report']}", file=sys.stderr)
    bad = [f for f in report["files"] if f["status"] == "failed"]
    for f in bad[:10]:
        print(f"  {f['reason']}")
    if len(bad) > 10:
        print(f"  ... and {len(bad) - 10} more")
    return 1 if bad else 0
