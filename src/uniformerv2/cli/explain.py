"""``uniformerv2 explain VIDEO --model M --output DIR``: where and when the model looks -- the global blocks'
query attention and the class-specific map, over the frames (MP4), as a sheet (PNG), as JSON and raw arrays."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import UserError
from .common import add_device, add_dtype, add_output, add_preset, add_quiet, add_views

OUTPUTS = ("explanation.mp4", "explanation.png", "explanation.json", "explanation.safetensors")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="where and when the model looks: attention maps over a video, per class",
        description="Explain one video: the global blocks' query attention over every frame token (per layer and "
                    "combined) and the map of one class (gradient-weighted attention), mapped back to the "
                    "frames and pixels of the video. Writes to --output: explanation.mp4 (the heat map and the "
                    "top classes over the video), explanation.png (sampled frames x layers), explanation.json "
                    "(class, probabilities, per-frame profile) and explanation.safetensors (the raw arrays).")
    p.add_argument("video", metavar="VIDEO", help="a video file")
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, metavar="PATH",
                   help="a pretrained name, a model or run directory, or a checkpoint file with --preset")
    add_preset(g, help="preset of a checkpoint file, e.g. k400_b16_8x224")
    add_device(g)
    add_dtype(g)
    add_output(p, required=True, help="folder for the four outputs (created)")
    p.add_argument("--target", metavar="CLASS",
                   help="the class to explain: a label or an index (default: the top-1, per window)")
    p.add_argument("--map", choices=["class", "attention"], default="class",
                   help="the map drawn on the video: class-specific (default) or the plain attention")
    add_views(p)
    p.add_argument("--window", type=float, metavar="S", help="explain windows of S seconds (long videos)")
    p.add_argument("--stride", type=float, metavar="S", help="seconds between window starts (default: --window)")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="classes written on the video (default: 3)")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..fileio import atomic_write, atomic_write_json
    from ..inference import VideoClassifier
    from ..inference.overlay import write_overlay_video

    if args.stride is not None and args.window is None:
        raise UserError("--stride needs --window")
    if args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    video = Path(args.video)
    if not video.is_file():
        raise UserError(f"{video}: no such video file")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    clf = VideoClassifier.from_pretrained(args.model, preset=args.preset, device=args.device, dtype=args.dtype)
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if not args.quiet and total > 1:
            rate = done / max(1e-9, time.perf_counter() - t0)
            end = "\n" if done == total else ""
            print(f"\rexplain: window {done}/{total} ({rate:.2f} windows/s)", end=end, file=sys.stderr, flush=True)

    expl = clf.explain(str(video), target=args.target, views=args.views, window=args.window, stride=args.stride,
                       progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    png = expl.overlay_png()
    atomic_write(out / OUTPUTS[1], lambda tmp: Path(tmp).write_bytes(png))
    atomic_write_json(out / OUTPUTS[2], expl.to_json())
    expl.save_arrays(out / OUTPUTS[3])
    if not args.quiet:
        print("explain: drawing the video ...", file=sys.stderr, flush=True)
    write_overlay_video(expl, str(video), out / OUTPUTS[0], kind=args.map, top_k=args.top_k)
    s = expl.probs[expl.target]
    print(f"{expl.path}: {expl.label} {s:.3f} ({len(expl.windows)} window{'s' * (len(expl.windows) > 1)}, "
          f"{time.perf_counter() - t0:.1f} s)")
    profile = expl.profile(expl.best_window())
    top = max((w["class_specific"] for w in profile), default=0.0) or 1.0
    for w in profile:
        bar = "#" * round(30 * w["class_specific"] / top)
        print(f"  frame {w['frame']:>6}  attention {w['attention']:.3f}  class {w['class_specific']:.3f}  {bar}")
    print(f"wrote {', '.join(str(out / n) for n in OUTPUTS)}", file=sys.stderr)
    return 0
