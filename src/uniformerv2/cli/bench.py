"""`uniformerv2 bench MODE`: benchmarks of our own code, one subcommand per mode. Each prints its table on stdout
and, with ``--output/-o FILE``, writes its results as JSON.

Comparisons with the official model code (CPU latency side by side, the GPU table) are scripts in
``benchmarks/`` of the source tree: ``benchmarks/cpu_vs_official.py`` and ``benchmarks/gpu_suite.py``.
"""
from __future__ import annotations

import argparse
import sys

from .common import add_device, add_output, add_preset, add_quiet, add_workers, at_least, workers_for

DPE_CHOICES = ("auto", "conv", "triton")  # accel.DPE_CHOICES, without importing torch for --help
COMPILE_CHOICES = ("none", "full", "regional", "reduce-overhead", "max-autotune")
POLICIES = ("branches", "block", "save_attention")
DTYPES = ("fp32", "bf16", "fp16")
AMP = ("none", "bf16", "fp16")

MODES = {
    "model": "clips/s and peak memory of inference or of the trainer's step, for a model preset",
    "pipeline": "training input pipeline: clips per CPU core (raw / prepared files x augmentation on the CPU / "
                "the device), then end-to-end training throughput with real decoding",
    "prepare": "prepared files per keyframe interval: PSNR, size, CPU time of sparse training reads",
    "inference": "predict with the default input workers against explicit worker counts, side by side, for "
                 "one video and a folder; the ratio of the default to the best",
    "decode": "the sparse clip reader against decoding every frame, per core",
    "views": "per-core decode rate of model presets' test views (no model is built)",
    "memory": "training memory and CPU time of each training variant, one process each (CPU)",
    "recipes": "training clips per CPU core and cores per GPU for every shipped training recipe",
    "feed-demo": "demo accuracy: source files with CPU augmentation against prepared files with device "
                 "augmentation, per seed",
    "backends": "the engine's backends side by side on the CPU: torch, ONNX Runtime fp32 and int8 (latency of "
                "one forward pass, ratio to torch, logit drift, top-1 agreement)",
    "explain": "faithfulness of `explain` on a model trained on a synth dataset (the make demo model): the maps' "
               "share on the moving target, deletion of the most-attended patch tubes against random ones; "
               "seconds per video beside predict",
    "serve": "a load run of `uniformerv2 serve` on loopback (good, truncated, random and oversize uploads from "
             "concurrent clients): videos/s, p50/p99 latency and peak RSS, batching against --max-batch 1",
    "live": "live recognition on a feed read in real time: lag, share of skipped windows and the feed rate kept up "
            "with, per model and thread count",
}


_positive, _count = at_least(1), at_least(0)


def add_parser(sub):
    p = sub.add_parser("bench", help="benchmarks: model, input pipeline, prepared files, inference workers, decoder",
                       description=__doc__.split("\n\n")[0])
    modes = p.add_subparsers(dest="mode", metavar="MODE")
    modes.required = True
    parsers = {name: modes.add_parser(name, help=text, description=text) for name, text in MODES.items()}
    for name, q in parsers.items():
        add_output(q, metavar="FILE", help="also write the results here as JSON")
        if name in ("prepare", "inference", "memory", "recipes", "feed-demo", "backends", "explain", "live"):
            add_quiet(q)
            q.set_defaults(func=run)
        else:
            q.set_defaults(func=run, quiet=True)

    q = parsers["model"]
    add_preset(q, default="k400_b16_8x224", help="model preset (random weights; default: %(default)s)")
    q.add_argument("--batch-size", type=_positive, default=1)
    q.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="compute dtype: the weights and the input cast to it, as `predict --dtype` (inference only)")
    q.add_argument("--amp", choices=AMP, default="none",
                   help="autocast to this dtype around the forward pass, as `train.precision` (default: none)")
    q.add_argument("--train", action="store_true",
                   help="time the trainer's step (engine.train.train_step: forward, backward, clipping, AdamW)")
    q.add_argument("--reference", action="store_true",
                   help="the reference model, without the speed variants of uniformerv2.accel.optimize")
    q.add_argument("--compile", choices=COMPILE_CHOICES, default="none",
                   help="torch.compile: full (one graph), regional (each block on its own: fast to compile), "
                        "reduce-overhead (CUDA graphs), max-autotune (default: none)")
    q.add_argument("--dpe", choices=DPE_CHOICES, default="auto", help="DPE implementation (default: auto)")
    q.add_argument("--grad-ckpt", type=_count, default=0, metavar="N",
                   help="activation checkpointing in the first N blocks (--train)")
    q.add_argument("--ckpt-policy", choices=POLICIES, default="branches")
    _device(q)
    q.add_argument("--iters", type=_positive, default=5)
    q.add_argument("--warmup", type=_count, default=2)
    _threads(q)

    q = parsers["pipeline"]
    add_preset(q, default="k400_b16_8x224", help="model preset whose training recipe is fed")
    q.add_argument("--clips", type=_positive, default=24, help="clips timed per case of the per-core table")
    q.add_argument("--steps", type=_count, default=10,
                   help="timed steps of the end-to-end run (0: only the per-core table)")
    q.add_argument("--batch-size", type=_positive, default=8, help="end-to-end run: clips per step")
    add_workers(q, "end-to-end run: DataLoader worker processes")
    q.add_argument("--videos", type=_positive, default=32, help="end-to-end run: dataset size (files are generated)")
    q.add_argument("--files", choices=["raw", "prepared"], default="prepared",
                   help="end-to-end run: generated files as written, or prepared (default)")
    q.add_argument("--augment-on", choices=["cpu", "device"], default="device",
                   help="end-to-end run: training transform in the workers or on the device (default)")
    q.add_argument("--amp", choices=AMP, default="none", help="end-to-end run: autocast dtype of the step")
    q.add_argument("--compile", choices=COMPILE_CHOICES, default="none")
    q.add_argument("--grad-ckpt", type=_count, default=0, metavar="N")
    _device(q)
    _threads(q)

    q = parsers["prepare"]
    q.add_argument("--intervals", type=_positive, nargs="+", default=[1, 2, 4, 8, 16, 32], metavar="K",
                   help="keyframe intervals (default: 1 2 4 8 16 32)")
    q.add_argument("--frames", type=_positive, nargs="+", default=[8, 16, 32], metavar="T",
                   help="clip lengths of the sparse reads (default: 8 16 32)")
    q.add_argument("--files", type=_positive, default=4, help="generated files (default: 4)")
    q.add_argument("--seconds", type=float, default=10.0, help="length of each generated file")
    q.add_argument("--draws", type=_positive, default=6, help="random clips per file (median)")

    q = parsers["inference"]
    src = q.add_mutually_exclusive_group()
    add_preset(src, help="model preset, random weights (default: tiny_k400_8x64)")
    src.add_argument("--model", metavar="M",
                     help="a model directory, run directory or pretrained name (instead of --preset)")
    q.add_argument("--worker-counts", type=_count, nargs="+", default=[0, 1, 2], metavar="N",
                   help="explicit input-worker counts timed beside the default (default: 0 1 2)")
    q.add_argument("--videos", type=_positive, default=8, help="generated videos in the folder case (default: 8)")
    q.add_argument("--video", metavar="FILE", help="your own video for the one-video case (default: a generated one)")
    q.add_argument("--folder", metavar="DIR", help="your own folder of videos for the folder case (default: generated)")
    q.add_argument("--seconds", type=float, default=10.0, help="length of each generated video (default: 10)")
    q.add_argument("--cases", nargs="+", choices=["one", "folder"], default=["one", "folder"],
                   help="one video, a folder of --videos videos, or both (default)")
    q.add_argument("--rounds", type=_positive, default=2, help="rounds over every setting (default: 2)")
    q.add_argument("--views", metavar="CxK", help="test views (default: the model's)")
    q.add_argument("--task", choices=["predict", "features"], default="predict")
    q.add_argument("--command", action="store_true", dest="time_command",
                   help="also time the whole `uniformerv2 predict VIDEO --model DIR [--workers N]` in a subprocess "
                        "for the one video (predict only)")
    q.add_argument("--dtype", choices=DTYPES, help="compute dtype, as `predict --dtype`")
    q.add_argument("--workdir", metavar="DIR", help="keep the generated videos (and model) here and reuse them")
    _device(q)

    q = parsers["decode"]
    q.add_argument("--repeats", type=_positive, default=5)
    q.add_argument("--frames", type=_positive, default=8, help="frames per clip (default: 8)")

    q = parsers["views"]
    q.add_argument("--preset", nargs="+", required=True, metavar="PRESET", help="model presets")
    q.add_argument("--videos", type=_positive, default=4, help="generated videos (default: 4)")
    q.add_argument("--seconds", type=float, default=10.0, help="length of each generated video (default: 10)")

    q = parsers["memory"]
    add_preset(q, default="k400_b16_8x224")
    q.add_argument("--batch-size", type=_positive, default=1)

    q = parsers["recipes"]
    q.add_argument("--clips", type=_positive, default=16, help="clips timed per case (default: 16)")
    q.add_argument("--workdir", metavar="DIR", help="keep the generated and prepared files here")

    q = parsers["feed-demo"]
    q.add_argument("--workdir", required=True, metavar="DIR", help="the data, prepared files and training runs")
    q.add_argument("--seeds", type=_count, nargs="+", default=[0, 1, 2])
    q.add_argument("--paths", nargs="+", default=["source:cpu", "prepared:device"],
                   choices=[f"{f}:{a}" for f in ("source", "prepared") for a in ("cpu", "device")],
                   help="(files, augmentation) combinations to train (default: source:cpu prepared:device)")
    q.add_argument("--rand-augment", action="store_true", help="rand-m7-n4-mstd0.5-inc1 on both paths")
    q.add_argument("--crf", type=float, help="prepare with this CRF (default: prepare's)")
    q.add_argument("--keyframe-interval", type=_positive, help="prepare with this keyframe interval")
    q.add_argument("--lossless", action="store_true", help="prepare lossless (exact frames)")
    q.add_argument("--epochs", type=_positive, help="default: the demo recipe's")
    q.add_argument("--lr", type=float, help="learning rate (default: the demo recipe's)")
    add_workers(q, "processes for synth and prepare")
    q.add_argument("--jobs", type=_positive, default=2, help="trainings at once (default: 2)")
    q.add_argument("--threads", type=_positive, default=1, help="torch threads per training (default: 1)")

    q = parsers["backends"]
    src = q.add_mutually_exclusive_group()
    add_preset(src, help="model preset, random weights (seeded; default: k400_b16_8x224)")
    src.add_argument("--model", metavar="M", help="a model directory, run directory or pretrained name instead")
    q.add_argument("--batch-size", type=_positive, default=1, help="views per forward pass (default: 1)")
    q.add_argument("--iters", type=_positive, default=5, help="timed rounds, each backend once per round")
    q.add_argument("--warmup", type=_count, default=1)
    q.add_argument("--cases", nargs="+", choices=["torch", "onnxruntime", "int8"],
                   default=["torch", "onnxruntime", "int8"], help="backends to time (torch is the reference)")
    q.add_argument("--cache", metavar="DIR", help="where the ONNX files are kept (default: the cache folder)")
    q.add_argument("--list", metavar="FILE",
                   help="with --model (a trained model): the accuracy cost instead of latency, on this labelled "
                        "list ('path,label' lines, read as eval reads them), e.g. the demo's data/test.csv")
    q.add_argument("--root", metavar="DIR", default="", help="resolve the list's relative paths here")
    q.add_argument("--predict", nargs="+", metavar="VIDEO",
                   help="with --model: time the whole `predict VIDEO... --model M` command per backend instead (a new "
                        "process each run, decoding included; --iters alternating rounds after one untimed run each)")
    _threads(q)

    q = parsers["explain"]
    q.add_argument("--model", required=True, metavar="M", help="a model trained on a synth dataset, e.g. "
                   "demo-output/uniformerv2/final")
    q.add_argument("--list", required=True, metavar="FILE", help="its labelled list, e.g. demo-output/data/test.csv")
    q.add_argument("--root", metavar="DIR", help="resolve the list's paths here (default: the list's folder)")
    q.add_argument("--limit", type=_positive, metavar="N", help="the first N videos of the list (default: all)")
    q.add_argument("--data-seed", type=_count, default=0, help="the dataset's synth --seed (default: 0)")
    q.add_argument("--frames", type=_positive, default=16, help="the dataset's synth --frames (default: 16)")
    q.add_argument("--size", type=_positive, default=64, help="the dataset's synth --size (default: 64)")
    q.add_argument("--draws", type=_positive, default=3, help="random deletions per video and fraction (default: 3)")
    q.add_argument("--timed", type=_positive, default=10,
                   help="videos timed with predict and explain, side by side (default: 10)")
    q.add_argument("--cost-preset", nargs="+", default=[], metavar="PRESET",
                   help="also time these presets (random weights, one view) on two of the videos, e.g. "
                        "k400_b16_8x224")
    _threads(q)
    q = parsers["serve"]
    add_quiet(q)
    q.set_defaults(quiet=False)
    src = q.add_mutually_exclusive_group()
    add_preset(src, help="model preset, random weights (default: tiny_k400_8x64)")
    src.add_argument("--model", metavar="M", help="a model directory or pretrained name instead")
    q.add_argument("--clients", type=_positive, default=32, help="concurrent clients (default: 32)")
    q.add_argument("--seconds", type=float, default=60.0, help="seconds of load per setting (default: 60)")
    q.add_argument("--max-batch", type=_count, nargs="+", default=[0, 1], metavar="V",
                   help="the settings side by side, views per pass; 0: the server's default (default: 0 1)")
    add_workers(q, "decode processes of the server (default: 1)")
    q.add_argument("--video-seconds", type=float, default=4.0, help="length of the generated good videos")
    q.add_argument("--max-wait-ms", type=float, metavar="MS", help="the servers' --max-wait-ms (default: theirs)")
    q.add_argument("--video-size", default="340x256", metavar="WxH",
                   help="frame size of the generated good videos (default: 340x256, Kinetics-like)")
    q.add_argument("--workdir", metavar="DIR", help="keep the generated videos (and model) here and reuse them")

    q = parsers["live"]
    q.add_argument("--presets", nargs="+", default=["tiny_k400_8x64", "k400_b16_8x224"], metavar="PRESET",
                   help="models (random weights; default: tiny_k400_8x64 k400_b16_8x224)")
    q.add_argument("--threads", type=_positive, nargs="+", default=[1, 2], metavar="N",
                   help="model threads, one run each (default: 1 2)")
    q.add_argument("--seconds", type=float, default=25.0, help="seconds of feed per run (default: 25)")
    q.add_argument("--fps", type=_positive, default=25, help="the feed's frame rate (default: 25)")
    q.add_argument("--workdir", metavar="DIR", help="keep the generated feed here and reuse it")


def _device(q):
    add_device(q)


def _threads(q):
    q.add_argument("--threads", type=_positive, help="CPU threads (torch.set_num_threads) while it runs")


def run(args) -> int:
    from ..bench.common import device_of, environment, header, threads, write_json
    from ..errors import UserError

    if getattr(args, "device", None) is not None:
        device_of(args.device)   # a device this machine lacks: one line, exit 2, before anything runs
    if args.mode == "model" and args.train and args.dtype != "fp32":
        raise UserError(f"--dtype {args.dtype} casts the weights, which is for inference; a training step keeps "
                        "fp32 weights: use --amp bf16 (autocast)")
    with threads(getattr(args, "threads", None) if args.mode in ("model", "pipeline", "backends", "explain")
                 else None):
        head = header()
        print(head)
        result, lines = RUNNERS[args.mode](args)
        print("\n".join(lines))
        env = environment()
    if args.output:
        options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "mode", "output", "quiet")}
        write_json(args.output, {"benchmark": args.mode, "options": options, "environment": env,
                                 "header": head, "result": result})
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _model(args):
    from ..bench.model import TABLE_HEAD, bench_model, table_row
    from ..factory import create_model

    r = bench_model(create_model(args.preset), args.batch_size, args.amp, train=args.train, compile=args.compile,
                    device=args.device, warmup=args.warmup, iters=args.iters, optimize=not args.reference,
                    dpe=args.dpe, grad_ckpt=args.grad_ckpt, ckpt_policy=args.ckpt_policy, dtype=args.dtype)
    r["preset"] = args.preset
    impl = "reference" if args.reference else "ours"
    return r, [TABLE_HEAD, table_row(r["workload"], impl, args.batch_size, r["precision"], r)]


def _pipeline(args):
    from ..bench.pipeline import bench_pipeline, pipeline_rates, pipeline_table

    r = pipeline_rates(args.preset, clips=args.clips, device=args.device, verbose=False)
    psnr = "-" if r["psnr"] is None else f"{r['psnr']:.1f} dB"
    out = [f"{r['preset']}: {r['frames']} frames, crop {r['crop_size']}, RandAugment {r['rand_augment']}, "
           f"{r['repeated_aug']} clip(s) per video; {r['files']} generated {r['seconds']:g} s 340x256 files, prepared "
           f"with the defaults (PSNR {psnr}, size x{r['size_ratio']:.2f}); {r['clips']} clips per case, one worker "
           f"process each; device: {r['device']}; load average {r['load']}", "", *pipeline_table(r)]
    result = {"per_core": r, "end_to_end": None}
    if args.steps > 0:
        workers = args.workers if args.workers is not None else workers_for(args.videos)
        e = bench_pipeline(args.preset, batch_size=args.batch_size, workers=workers, steps=args.steps,
                           videos=args.videos, amp=args.amp, device=args.device, compile=args.compile,
                           grad_ckpt=args.grad_ckpt, files=args.files, augment_on=args.augment_on, verbose=False)
        result["end_to_end"] = e
        out += ["", "| preset | files | augmentation | batch | workers | clips/s | data wait | "
                    "clips/s per worker core |",
                "|---|---|---|---|---|---|---|---|",
                f"| {e['preset']} | {e['files']} | {e['augment_on']} | {e['batch_size']} | {e['workers']} | "
                f"{e['clips_per_s']:.2f} | {100 * e['data_wait_fraction']:.0f}% | {e['clips_per_core_s']:.1f} |"]
    return result, out


def _prepare(args):
    from ..bench.common import load_text
    from ..bench.prepare import bench_prepare, prepare_table

    r = bench_prepare(intervals=tuple(args.intervals), frames=tuple(args.frames), files=args.files,
                      seconds=args.seconds, draws=args.draws, verbose=not args.quiet)
    return r, [f"{r['files']} generated Kinetics-like files ({args.seconds:g} s, 340x256, 30 fps H.264); prepared "
               f"with {r['settings']}; one core, median of the reads; load average {load_text()}", "",
               *prepare_table(r)]


def _inference(args):
    from ..bench.inference import bench_inference, inference_table

    preset = None if args.model else (args.preset or "tiny_k400_8x64")
    r = bench_inference(preset, model_path=args.model, workers=args.worker_counts, videos=args.videos,
                        seconds=args.seconds, views=args.views, task=args.task, device=args.device, dtype=args.dtype,
                        rounds=args.rounds, cases=args.cases, command=args.time_command, workdir=args.workdir,
                        video=args.video, folder=args.folder, verbose=not args.quiet)
    return r, inference_table(r)


def _decode(args):
    from ..bench.decode import bench_decode, format_table

    r = bench_decode(repeats=args.repeats, num_frames=args.frames)
    s = r["shipping"]
    return r, [format_table(r["rows"]), "",
               f"val clip to the model: float in the worker {s['float_worker_ms']:.1f} ms, "
               f"{s['float_bytes'] / 2**20:.2f} MiB; uint8 in the worker {s['uint8_worker_ms']:.1f} ms, "
               f"{s['uint8_bytes'] / 2**20:.2f} MiB (+ normalising on the device)"]


def _views(args):
    from ..bench.inference import recipe_decode_rates

    rows = recipe_decode_rates(args.preset, videos=args.videos, seconds=args.seconds)
    return {"rows": rows, "videos": args.videos, "seconds_per_video": args.seconds}, [
        "| preset | test views | frames x size | videos/s per core (decode + crops) |", "|---|---|---|---|"] + [
        f"| {r['preset']} | {r['views']} | {r['frames']}x{r['size']} | {r['videos_per_core_s']:.2f} |" for r in rows]


def _memory(args):
    from ..bench.memory import bench_memory, memory_table

    r = bench_memory(args.preset, args.batch_size, verbose=not args.quiet)
    return r, [f"{args.preset}, batch {args.batch_size}, fp32, one forward and backward pass per process",
               *memory_table(r)]


def _recipes(args):
    from ..bench.recipes import bench_recipes, recipes_table

    r = bench_recipes(clips=args.clips, workdir=args.workdir, verbose=not args.quiet)
    return r, [f"load average {r['load_start']} at the start, {r['load_end']} at the end", "", *recipes_table(r)]


def _feed_demo(args):
    from ..bench.feed_demo import feed_demo, feed_demo_table

    workers = args.workers if args.workers is not None else workers_for(len(args.seeds) * len(args.paths))
    r = feed_demo(args.workdir, args.seeds, paths=args.paths, rand_augment=args.rand_augment, workers=workers,
                  crf=args.crf, keyframe_interval=args.keyframe_interval, lossless=args.lossless,
                  epochs=args.epochs, lr=args.lr, jobs=args.jobs, threads=args.threads, verbose=not args.quiet)
    lines = feed_demo_table(r) + [""] + [
        f"test top-1, {label}: mean {s['mean']:.2f} (min {s['min']:.2f}, max {s['max']:.2f}, {s['seeds']} seeds)"
        for label, s in r["test_top1"].items()]
    return r, lines


def _backends(args):
    from ..bench.backends import accuracy_table, backend_accuracy, backends_table, bench_backends
    from ..errors import UserError

    cases = {"torch": ("torch", "none"), "onnxruntime": ("onnxruntime", "none"), "int8": ("onnxruntime", "int8")}
    chosen = [cases[c] for c in dict.fromkeys(["torch", *args.cases])]
    if args.predict:
        from ..bench.backends import bench_predict, predict_table

        if not args.model or args.list:
            raise UserError("--predict times a model's predict command: give it with --model (and no --list)")
        if args.cache:
            raise UserError("--predict runs predict as a user does: its ONNX files are in $UNIFORMERV2_HOME/onnx, "
                            "not --cache")
        r = bench_predict(args.model, args.predict, cases=chosen, rounds=args.iters, verbose=not args.quiet)
        r["model"] = args.model
        return r, [f"{args.model}: `predict` on {len(args.predict)} video(s), median of {r['rounds']} "
                   "alternating rounds after one untimed run each; ONNX files from the cache folder", "",
                   *predict_table(r)]
    if args.list:
        if not args.model:
            raise UserError("--list measures a trained model: give it with --model")
        r = backend_accuracy(args.model, args.list, root=args.root, cases=chosen, cache=args.cache)
        r["model"] = args.model
        return r, [f"{args.model}: {r['videos']} videos of {args.list}, the model's views", "", *accuracy_table(r)]

    def model_fn():
        import torch

        from ..factory import create_model, load_model

        if args.model:
            return load_model(args.model, None, need_recipe=False)
        torch.manual_seed(0)
        return create_model(args.preset or "k400_b16_8x224")

    r = bench_backends(model_fn, batch=args.batch_size, iters=args.iters, warmup=args.warmup, cases=chosen,
                       cache=args.cache, verbose=not args.quiet)
    r["model"] = args.model or args.preset or "k400_b16_8x224"
    return r, [f"{r['model']}: batch {r['batch']}, {r['threads']} threads, median of {r['iters']} alternating "
               f"rounds after {r['warmup']} warm-up; weights {'given' if args.model else 'random (seed 0)'}", "",
               *backends_table(r)]


def _explain(args):
    from ..bench.explain import bench_explain, explain_tables

    r = bench_explain(args.model, args.list, root=args.root, limit=args.limit, seed=args.data_seed,
                      frames=args.frames, size=args.size, draws=args.draws, timed=args.timed,
                      cost_presets=args.cost_preset, verbose=not args.quiet)
    r["model"] = args.model
    return r, [f"{args.model} on {args.list}", "", *explain_tables(r)]


def _serve(args):
    from ..bench.serve import bench_serve, serve_table

    r = bench_serve(args.model, args.preset or "tiny_k400_8x64", clients=args.clients, seconds=args.seconds,
                    batches=[b or None for b in args.max_batch], workers=args.workers or 1, workdir=args.workdir,
                    video_seconds=args.video_seconds, video_size=_size(args.video_size), max_wait_ms=args.max_wait_ms,
                    verbose=not args.quiet)
    first = r["rows"][0]
    return r, [f"{first['model']} ({first['preset']}, views {first['views']}), {r['clients']} clients x "
               f"{r['seconds']:g} s per setting, {r['workers']} decode worker(s), {r['cores']} cores; good videos "
               f"{r['video_seconds']:g} s {r['video_size'][0]}x{r['video_size'][1]}; mix per 10 requests: "
               f"{r['mix']}, upload limit {r['upload_limit_mb']:g} MB", "", *serve_table(r)]


def _size(text: str) -> tuple[int, int]:
    from ..errors import UserError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--video-size must look like 340x256, got {text!r}") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise UserError(f"--video-size must be even sides of at least 16 pixels, got {text!r}")
    return w, h


def _live(args):
    from ..bench.live import bench_live, live_table, summary

    r = bench_live(args.presets, args.threads, seconds=args.seconds, fps=args.fps, workdir=args.workdir,
                   verbose=not args.quiet)
    return r, [summary(r), "", *live_table(r)]


RUNNERS = {"model": _model, "pipeline": _pipeline, "prepare": _prepare, "inference": _inference, "decode": _decode,
           "views": _views, "memory": _memory, "recipes": _recipes, "feed-demo": _feed_demo, "backends": _backends,
           "explain": _explain, "serve": _serve, "live": _live}
