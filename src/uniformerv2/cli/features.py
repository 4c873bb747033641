"""``uniformerv2 features PATH... --model M --out DIR``: save pre-head features per video or per window."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError, VideoError
from .predict import add_model_args, add_window_args, load_classifier, progress


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "features", help="extract pre-head video features (per video or per window)",
        description="Write the fused pre-head feature of each video (mean over the test views; per window "
                    "with --window) to DIR, mirroring the layout of input folders. Exit code 1 when some "
                    "inputs could not be read.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="video files or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", choices=["safetensors", "npy"], default="safetensors",
                   help="file format (default: safetensors, which also keeps per-view features)")
    add_window_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..inference.features import save_features
    from ..inference.inputs import collect_videos

    videos = collect_videos(args.paths)
    clf = load_classifier(args)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is not a folder")
    model_name = clf.model.preset or clf.model.cfg.arch
    used, failed = set(), 0
    with progress(len(videos), args.quiet) as bar:
        for path, rel in videos:
            target = _unique(out_dir / rel.with_suffix(""), used)
            try:
                feats = clf.extract_features(str(path), views=args.views, window=args.window, stride=args.stride)
            except (VideoError, OSError) as e:
                failed += 1
                bar.write(f"{path}: ERROR: {' '.join(str(e).split())}", file=sys.stderr)
            else:
                meta = {"path": str(path), "model": model_name, "views": args.views or "default",
                        "dim": str(feats.features.shape[-1])}
                written = save_features(feats, target, args.format, meta)
                bar.write(f"{path} -> {written[0]} {list(feats.features.shape)}", file=sys.stdout)
            bar.update(1)
    if failed:
        print(f"uniformerv2: {failed} of {len(videos)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _unique(target: Path, used: set) -> Path:
    """``target``, or ``target-1``, ``target-2``... when two inputs share a name."""
    cand, n = target, 0
    while cand in used:
        n += 1
        cand = target.with_name(f"{target.name}-{n}")
    used.add(cand)
    return cand
