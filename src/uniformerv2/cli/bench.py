"""`uniformerv2 bench`: clips/s and peak memory of our model, the input pipeline, prepared files, the inference
pipeline, or the video decoder.

Comparisons with the official model code (CPU latency side by side, the GPU table) are scripts in
``benchmarks/`` of the source tree: ``benchmarks/cpu_vs_official.py`` and ``benchmarks/gpu_suite.py``.
"""
from __future__ import annotations

import sys

DPE_CHOICES = ("auto", "conv", "triton")  # accel.DPE_CHOICES, without importing torch for --help
COMPILE_CHOICES = ("none", "full", "regional", "reduce-overhead", "max-autotune")
POLICIES = ("branches", "block", "save_attention")


def add_parser(sub):
    p = sub.add_parser("bench", help="measure throughput and memory of a model, the input pipeline or the decoder",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="k400_b16_8x224")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast dtype")
    p.add_argument("--model-dtype", choices=["bf16", "fp16"], default=None,
                   help="inference with the weights cast to this dtype, no autocast (what `predict` does)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (same as --compile-mode full)")
    p.add_argument("--compile-mode", choices=COMPILE_CHOICES, default=None,
                   help="full: one graph; regional: each block on its own (fast to compile); "
                        "reduce-overhead: CUDA graphs")
    p.add_argument("--train", action="store_true", help="time a training step (forward, backward, AdamW)")
    p.add_argument("--reference", action="store_true",
                   help="the reference model, without the speed variants of uniformerv2.accel.optimize")
    p.add_argument("--device", default=None)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--dpe", choices=DPE_CHOICES, default="auto", help="DPE implementation (default: auto)")
    p.add_argument("--grad-ckpt", type=int, default=0, metavar="N",
                   help="activation checkpointing in the first N blocks (training)")
    p.add_argument("--ckpt-policy", choices=POLICIES, default="branches")
    p.add_argument("--out", metavar="FILE", help="also write the markdown table here")
    p.add_argument("--data", action="store_true", help="benchmark the video decoder (sparse reading vs decode all)")
    p.add_argument("--pipeline", action="store_true",
                   help="training clips/s per CPU core, raw vs prepared files x augmentation on the CPU vs the "
                        "device, and decoding alone, side by side; then (--steps > 0) end-to-end training "
                        "throughput with real decoding over --workers processes")
    p.add_argument("--prepare", action="store_true",
                   help="prepared files per keyframe interval: PSNR, size, CPU time of 8/16/32-frame sparse reads")
    p.add_argument("--files", choices=["raw", "prepared"], default="prepared",
                   help="--pipeline end-to-end: generated files as written, or prepared (default)")
    p.add_argument("--augment-on", choices=["cpu", "device"], default="device",
                   help="--pipeline end-to-end: training transform in the workers or on the device (default)")
    p.add_argument("--clips", type=int, default=24, help="--pipeline: clips timed per case of the per-core table")
    p.add_argument("--workers", type=int, default=None,
                   help="--pipeline: DataLoader worker processes (default 4); --inference-pipeline: measure 0..N "
                        "input workers (default: usable cores minus one)")
    p.add_argument("--inference-pipeline", action="store_true",
                   help="videos/s of predict (or --task features) over generated videos for 0..--workers input "
                        "workers, side by side, with the ratio to 0 workers and the per-core decode rate")
    p.add_argument("--task", choices=["predict", "features"], default="predict", help="--inference-pipeline")
    p.add_argument("--views", metavar="CxK", help="--inference-pipeline: test views (default: the preset's)")
    p.add_argument("--seconds", type=float, default=10.0, help="--inference-pipeline: length of each video")
    p.add_argument("--rounds", type=int, default=2, help="--inference-pipeline: rounds over all worker counts")
    p.add_argument("--decode-presets", nargs="+", metavar="PRESET",
                   help="--inference-pipeline: only the per-core decode rate of these presets' test views")
    p.add_argument("--steps", type=int, default=10, help="--pipeline: timed steps")
    p.add_argument("--videos", type=int, default=None,
                   help="--pipeline / --inference-pipeline: dataset size (files are generated; default 32 / 64)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..bench import TABLE_HEAD, bench_model, header, table_row, threads
    from ..factory import create_model

    with threads(args.threads):
        if args.data:
            from ..data import benchmark

            benchmark.run()
            return 0
        mode = args.compile_mode or ("full" if args.compile else "none")
        lines = [header()]
        print(lines[0])
        if args.inference_pipeline:
            lines += _inference_pipeline(args)
            print("\n".join(lines[1:]))
        elif args.prepare:
            lines += _prepare()
            print("\n".join(lines[1:]))
        elif args.pipeline:
            lines += _pipeline(args, mode)
            print("\n".join(lines[1:]))
        else:
            label = "training" if args.train else "inference"
            r = bench_model(create_model(args.preset), args.batch_size, args.dtype, train=args.train, compile=mode,
                            device=args.device, warmup=args.warmup, iters=args.iters, optimize=not args.reference,
                            dpe=args.dpe, grad_ckpt=args.grad_ckpt, ckpt_policy=args.ckpt_policy,
                            model_dtype=args.model_dtype)
            impl = "reference" if args.reference else "ours"
            lines += [TABLE_HEAD, table_row(label, impl, args.batch_size, r["precision"], r)]
            print("\n".join(lines[1:]))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _prepare() -> list[str]:
    """Markdown lines of ``--prepare``."""
    from ..bench import _load, bench_prepare, prepare_table

    r = bench_prepare()
    return [f"{r['files']} generated Kinetics-like files (10 s, 340x256, 30 fps H.264); prepared with "
            f"{r['settings']}; one core, median of the reads; load average {_load()}", "", *prepare_table(r)]


def _pipeline(args, mode: str) -> list[str]:
    """Markdown lines of ``--pipeline``: the per-core table, then the end-to-end run (``--steps`` > 0)."""
    from ..bench import bench_pipeline, pipeline_rates, pipeline_table

    r = pipeline_rates(args.preset, clips=args.clips, device=args.device, verbose=False)
    psnr = "-" if r["psnr"] is None else f"{r['psnr']:.1f} dB"
    out = [f"{r['preset']}: {r['frames']} frames, crop {r['crop_size']}, RandAugment {r['rand_augment']}, "
           f"{r['repeated_aug']} clip(s) per video; {r['files']} generated {r['seconds']:g} s 340x256 files, prepared "
           f"with the defaults (PSNR {psnr}, size x{r['size_ratio']:.2f}); {r['clips']} clips per case, one worker "
           f"process each; device: {r['device']}; load average {r['load']}", "", *pipeline_table(r)]
    if args.steps > 0:
        e = bench_pipeline(args.preset, batch_size=args.batch_size, workers=4 if args.workers is None else args.workers,
                           steps=args.steps, videos=args.videos or 32, dtype=args.dtype, device=args.device,
                           compile=mode, train=True, grad_ckpt=args.grad_ckpt, files=args.files,
                           augment_on=args.augment_on, verbose=False)
        out += ["", "| preset | files | augmentation | batch | workers | clips/s | data wait | clips/s per worker core |",
                "|---|---|---|---|---|---|---|---|",
                f"| {e['preset']} | {e['files']} | {e['augment_on']} | {e['batch_size']} | {e['workers']} | "
                f"{e['clips_per_s']:.2f} | {100 * e['data_wait_fraction']:.0f}% | {e['clips_per_core_s']:.1f} |"]
    return out


def _inference_pipeline(args) -> list[str]:
    """Markdown lines of ``--inference-pipeline``."""
    import os

    from ..inference.benchmark import bench_inference_pipeline, recipe_decode_rates
    from ..inference.pipeline import default_workers

    if args.decode_presets:
        rows = recipe_decode_rates(args.decode_presets, seconds=args.seconds)
        return ["| preset | test views | frames x size | videos/s per core (decode + crops) |", "|---|---|---|---|"] + [
            f"| {r['preset']} | {r['views']} | {r['frames']}x{r['size']} | {r['videos_per_core_s']:.2f} |" for r in rows]
    top = default_workers() if args.workers is None else args.workers
    batch = None if args.batch_size == 1 else args.batch_size   # --batch-size left at its default: the model's own
    r = bench_inference_pipeline(args.preset, workers=tuple(range(top + 1)), videos=args.videos or 64,
                                 seconds=args.seconds, views=args.views, task=args.task, device=args.device,
                                 dtype=args.model_dtype, batch_size=batch, rounds=args.rounds)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    out = [f"{r['task']} over {r['videos']} generated {r['seconds_per_video']:g} s 340x256 videos, {r['preset']}, "
           f"views {r['views']}, {r['batch_size']} views per forward pass, {r['rounds']} rounds; load average {load}",
           "", "| input workers | videos/s | clips/s | data wait | CPU s per video | vs 0 workers |",
           "|---|---|---|---|---|---|"]
    out += [f"| {x['workers']} | {x['videos_per_s']:.2f} | {x['clips_per_s']:.1f} | {100 * x['data_wait']:.0f}% | "
            f"{x['cpu_s_per_video']:.3f} | {x['ratio']:.2f}x |" for x in r["rows"]]
    out += ["", f"decode: {r['decode_videos_per_core_s']:.2f} videos/s per core; model alone ({r['device']}): "
                f"{r['model_clips_per_s']:.1f} clips/s = {r['model_videos_per_s']:.2f} videos/s, which needs about "
                f"{r['cores_for_model']:.1f} input worker cores"]
    return out
