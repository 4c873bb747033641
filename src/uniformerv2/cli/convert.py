"""`uniformerv2 convert SRC DST [--preset NAME] [--to official]`.

SRC an official ``.pyth`` (or any UniFormerV2 checkpoint) -> DST a model directory; SRC an image-ViT file
with ``--preset`` -> a freshly armed model directory; ``--to official``: SRC a model -> DST ``.pyth`` in the
official layout.
"""
from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("convert", help="convert between official checkpoints, image-ViT files and model directories")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--preset", help="architecture/recipe of SRC (needed for image-ViT files)")
    p.add_argument("--to", choices=["model", "official"], default="model", help="output layout (default: model dir)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..errors import CheckpointError, UserError
    from ..factory import create_model, load_model
    from ..weights import export_official_state_dict
    from ..fileio import atomic_write

    dst = Path(args.dst)
    if dst.exists() and args.to == "model" and any(dst.iterdir() if dst.is_dir() else [True]):
        raise UserError(f"{dst} exists and is not empty; choose a new output path")
    try:
        model = load_model(args.src, preset=args.preset)
    except CheckpointError as e:
        if "image-ViT" not in str(e):
            raise
        if not args.preset:
            raise UserError(f"{args.src} is an image ViT: pass --preset NAME to choose the video model") from None
        model = create_model(args.preset, pretrained=args.src)
    if args.to == "official":
        sd = export_official_state_dict(model)
        atomic_write(dst, lambda p: torch.save(sd, p))
        print(f"wrote {dst} ({len(sd)} tensors, official layout)")
    else:
        model.save_pretrained(dst)
        print(f"wrote {dst}/ (config.json + model.safetensors; {model.load_report.summary() if model.load_report else ''})")
    return 0
