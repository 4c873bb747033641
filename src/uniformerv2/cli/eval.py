"""``uniformerv2 eval --config FILE --model PATH [--split test] [--output DIR] [key=value ...]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from .common import (add_backend, add_device, add_dtype, add_output, add_quiet, add_views, add_workers,
                     backend_signature)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="evaluate a model on a list of videos with multi-view testing",
        description=(
            "Multi-view evaluation (clips x crops, aggregated by mean softmax or mean logits): top-1,\n"
            "top-5, mean class accuracy; with --output also per_class.csv, predictions.json,\n"
            "confusion.png, metrics.json and manifest.jsonl (resumable with --resume). --model: a model\n"
            "directory, a run directory (its best/ or final/), or a checkpoint file (ours or official)\n"
            "loaded into model.preset of the config. Decoding runs in --workers processes; sharded over\n"
            "processes under torchrun (each video counted once). Exit code 1 when some videos could not\n"
            "be read (they are reported and left out of the metrics)."))
    p.add_argument("--config", "-c", required=True, help="YAML file or shipped config name")
    p.add_argument("--model", "-m", required=True, metavar="PATH", help="model dir, run dir or checkpoint file")
    p.add_argument("--split", default="test", choices=("test", "val"), help="which list of the config (default: test)")
    p.add_argument("--list", metavar="FILE", help="labelled video list ('path,label' lines) instead of the config's")
    p.add_argument("--root", metavar="DIR", help="resolve relative paths of the list here (data.root)")
    p.add_argument("--labels", metavar="FILE",
                   help="class names of the list's label indices, one per line (default: labels.txt or "
                        "classes.txt beside the list); 'model': the indices are in the model's class order")
    add_output(p, aliases=("--out",), help="write the evaluation files here")
    add_views(p, help="test views, clips x crops (default: the config's eval.test_clips x eval.test_crops, "
                      "else the model's)")
    add_device(p, help="cpu, cuda, cuda:1, mps ... (default: the config's train.device)")
    add_dtype(p, help="compute dtype (default: fp32)")
    add_backend(p)
    add_workers(p)
    add_quiet(p)
    p.add_argument("--resume", action="store_true", help="continue the evaluation recorded in --output")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: try the failed videos again")
    p.add_argument("--overwrite", action="store_true", help="start again in an --output that holds a run")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)


def resolve_model(path: str, cfg: dict):
    """The model of ``--model`` as ``factory.model_for_config`` resolves it against the config."""
    from ..factory import model_for_config

    return model_for_config(cfg, path)


def run(args) -> int:
    from ..engine import distributed as dist
    from ..engine.config import load_config
    from ..engine.data import _list_path, labelled_items
    from ..engine.evaluate import config_views, evaluate_videos
    from ..inference import VideoClassifier

    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if (args.resume or args.overwrite or args.retry_failed) and not args.output:
        raise UserError("--resume, --retry-failed and --overwrite need --output DIR (where the run is recorded)")
    if args.retry_failed and not args.resume:
        raise UserError("--retry-failed goes with --resume")
    cfg = load_config(args.config, args.overrides)
    split = args.split
    if args.list:
        cfg["data"][split] = str(Path(args.list).resolve())
    if args.root:
        if not Path(args.root).is_dir():
            raise UserError(f"--root {args.root} is not a folder")
        cfg["data"]["root"] = args.root
    if not cfg["data"][split] and split == "test" and cfg["data"]["val"]:
        split = "val"
        print(f"uniformerv2: data.test is not set: evaluating data.val ({cfg['data']['val']})", file=sys.stderr)
    if not cfg["data"][split]:
        raise UserError(f"data.{split} is not set (a list file of 'path,label' lines; or --list FILE)")
    list_path = _list_path(cfg["data"]["root"], cfg["data"][split])
    if not Path(list_path).is_file():
        raise UserError(f"data.{split}: list file {list_path} not found")
    info = dist.setup(args.device or ("cpu" if args.backend != "torch" else cfg["train"]["device"]))
    try:
        model = resolve_model(args.model, cfg)
        clf = VideoClassifier(model, device=info.device, dtype=args.dtype or "fp32", backend=args.backend,
                              quantize=args.quantize)
        items, how = labelled_items(list_path, root=cfg["data"]["root"], sep=cfg["data"]["separator"],
                                    model_labels=model.labels, list_labels=args.labels)
        views = args.views or config_views(cfg, clf.data)
        workers = args.workers if args.workers is not None else cfg["eval"]["num_workers"]
        progress = cfg["train"]["progress"] and info.is_main and not args.quiet
        d = cfg["data"]
        res = evaluate_videos(
            clf, items, aggregate=cfg["eval"]["aggregate"], views=views, workers=workers, out_dir=args.output,
            video_key=cfg["eval"]["video_key"], resume=args.resume, retry_failed=args.retry_failed,
            overwrite=args.overwrite, progress=progress, backend=d["backend"], timeout=d["timeout"],
            frame_template=d["frame_template"], frame_start_index=d["frame_start_index"],
            signature={"model": str(Path(args.model).resolve()), "config": cfg["model"],
                       "pipeline": model.data_config.to_dict(), **backend_signature(args)})
    finally:
        dist.cleanup()
    if res is None or not info.is_main:   # another process of a torchrun run: rank 0 reports
        return 1 if res is not None and res["skipped"] else 0
    print(f"top-1 {res['top1']:.2f}  top-5 {res['top5']:.2f}  mean class accuracy "
          f"{res['mean_class_accuracy']:.2f}  ({res['count']} videos, {len(res['skipped'])} skipped, "
          f"{views} views, {res['aggregate']} aggregation)")
    if "video_level" in res:
        v = res["video_level"]
        print(f"video level: top-1 {v['top1']:.2f}  top-5 {v['top5']:.2f}  ({v['count']} videos)")
    print(f"labels: {how}", file=sys.stderr)
    if args.output:
        print(f"wrote {args.output}/metrics.json, per_class.csv, predictions.json, confusion.png, manifest.jsonl",
              file=sys.stderr)
    print(res["stats"].line(), file=sys.stderr)
    if res["skipped"]:
        print(f"uniformerv2: {len(res['skipped'])} of {res['count'] + len(res['skipped'])} videos could not be "
              "read", file=sys.stderr)
    return 1 if res["skipped"] else 0
