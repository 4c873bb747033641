"""``uniformerv2 live SOURCE --model M``: classify a live feed (a camera, a network stream, a pipe, a file played
at its own rate) as it plays, every few seconds of feed, with bounded lag (``VideoClassifier.live``)."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import UserError
from .common import at_least
from .predict import add_model_args


def _option(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def _seconds(value: str) -> float:
    try:
        s = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not s > 0:
        raise argparse.ArgumentTypeError(f"must be positive seconds, got {value}")
    return s


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "live", help="classify a live feed (camera, RTSP/HTTP/TCP/UDP stream, pipe) in real time",
        description="Classify a live feed as it plays: every --every seconds of feed, the most recent --window "
                    "seconds sampled as the model's recipe samples (from the stream's timestamps), one centre view "
                    "by default. Decoding runs apart from the model; when the model falls behind, stale windows "
                    "are skipped (the newest wins) and each update says how many, and its lag. Ctrl-C stops and "
                    "prints a summary. Exit code 0: stopped (end of feed, --duration, Ctrl-C); 2: the source "
                    "does not open, or bad usage.")
    p.add_argument("source", metavar="SOURCE",
                   help="a camera (/dev/video0), a URL FFmpeg opens (rtsp://, rtmp://, http(s)://, tcp://, udp://, "
                        "HLS), a video file (with --realtime: played at its own frame rate), or - (stdin)")
    add_model_args(p)
    g = p.add_argument_group("source")
    g.add_argument("--format", metavar="FMT", help="the demuxer (e.g. v4l2, mpegts; default: FFmpeg's guess, "
                                                    "v4l2 for /dev/video*)")
    g.add_argument("--input-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="a demuxer / protocol option (repeatable), e.g. rtsp_transport=tcp, video_size=640x480, "
                        "framerate=30")
    g.add_argument("--realtime", action="store_true",
                   help="read at the frames' own rate (a file as a live feed); without it a file has every "
                        "window classified, as fast as the model goes")
    g.add_argument("--reconnect", action=argparse.BooleanOptionalAction, default=None,
                   help="open a dropped network source again, with back-off (default: on for network sources)")
    g.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds a network source may take to open (default: 10)")
    g = p.add_argument_group("windows")
    g.add_argument("--window", type=_seconds, metavar="S",
                   help="seconds of feed each clip is sampled from (default: a dense recipe's clip span; sparse "
                        "recipes: T frames a quarter of a second apart, 2 s for 8 frames)")
    g.add_argument("--every", type=_seconds, metavar="S", help="seconds of feed between updates (default: "
                                                                "--window / 2)")
    g.add_argument("--views", metavar="CxK", default="1x1",
                   help="test views, clips x crops (default: 1x1, one centre view: live means latency)")
    g.add_argument("--smooth", type=at_least(1), default=1, metavar="N",
                   help="average the probabilities of the last N updates (default: 1, none)")
    g.add_argument("--threshold", type=float, metavar="P", help="report only classes with probability >= P")
    g.add_argument("--top-k", type=at_least(1), default=5, metavar="K", help="labels per update (default: 5)")
    g.add_argument("--threads", type=at_least(1), metavar="N",
                   help="CPU threads of the model (default: the usable cores but one, which decodes)")
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true",
                   help="one JSON object per update on stdout: stream_time, wall_time, top_k, lag, skipped (gap "
                        "after a reconnect)")
    g.add_argument("--frame-times", action="store_true",
                   help="with --json: also the stream times of the frames each clip took (frame_times)")
    g.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds of feed")
    g.add_argument("--output-video", metavar="OUT.mp4", help="record the feed with the current labels drawn on it")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..inference import VideoClassifier

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold must be a probability in [0, 1], got {args.threshold}")
    if args.frame_times and not args.json:
        raise UserError("--frame-times goes with --json")
    from ..inference.live import parse_source

    parse_source(args.source, args.format)   # a missing camera or file: one line before the model loads
    clf = VideoClassifier.from_pretrained(args.model, preset=args.preset, device=args.device, dtype=args.dtype,
                                          backend=args.backend, quantize=args.quantize)
    stream = clf.live(args.source, every=args.every, window=args.window, views=args.views, top_k=args.top_k,
                      smooth=args.smooth, threshold=args.threshold, format=args.format,
                      options=dict(args.input_option), realtime=args.realtime, reconnect=args.reconnect,
                      duration=args.duration, output_video=args.output_video, threads=args.threads, timeout=args.timeout,
                      log=lambda line: print(f"uniformerv2: {line}", file=sys.stderr, flush=True))
    print(f"live: {args.source} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        for update in stream:
            if args.json:
                print(json.dumps(update.to_dict(frames=args.frame_times)), flush=True)
            else:
                print(update.line(), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        stream.close()
    print(stream.stats.line(), file=sys.stderr)
    if args.output_video:
        print(f"recorded: {args.output_video}", file=sys.stderr)
    return 0
