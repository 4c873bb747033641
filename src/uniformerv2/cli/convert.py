"""`uniformerv2 convert MODEL --output OUT [--preset NAME] [--to model|official|mmaction2]`.

MODEL a model directory, a checkpoint file (official ``.pyth``, MMAction2 ``.pth``, ours) or a pretrained
name -> OUT a model directory (default), an official ``.pyth`` (``--to official``) or an MMAction2
checkpoint (``--to mmaction2``: MMAction2's keys and shapes, head rows in its label order).  MODEL an
image-ViT file or name (CLIP…) with ``--preset``: a freshly armed model.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .common import add_output, add_preset


def add_parser(sub):
    p = sub.add_parser("convert", help="convert between model directories, official / MMAction2 checkpoints and "
                                       "image-ViT files",
                       description="Load MODEL (a model directory, a checkpoint file -- official .pyth, MMAction2 "
                                   ".pth, ours -- or a pretrained name from `uniformerv2 models --pretrained`) and "
                                   "write it to --output OUT: a model directory, the official layout or MMAction2's. An "
                                   "image-ViT file or name (CLIP) with --preset gives a freshly armed model.")
    p.add_argument("src", metavar="MODEL", help="model directory, checkpoint file or pretrained name")
    add_output(p, required=True, metavar="OUT", positional="OUT",
               help="output model directory, or file with --to official / mmaction2")
    add_preset(p, help="preset (architecture and recipe) of MODEL (needed for image-ViT files)")
    p.add_argument("--to", choices=["model", "official", "mmaction2"], default="model",
                   help="output layout: model (directory, default), official (.pyth), mmaction2 (.pth)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..errors import UserError
    from ..factory import create_model, load_model
    from ..fileio import atomic_write
    from ..weights import export_official_state_dict
    from ..weights.loading import ImageWeightsError
    from ..weights.mmaction2 import save_mmaction2

    dst = Path(args.output)
    if args.to == "model" and dst.exists() and any(dst.iterdir() if dst.is_dir() else [True]):
        raise UserError(f"{dst} exists and is not empty; choose a new output path")
    if args.to != "model" and dst.is_dir():
        raise UserError(f"{dst} is a directory; --to {args.to} writes one file")
    try:
        model = load_model(args.src, preset=args.preset)
    except ImageWeightsError:
        if not args.preset:
            raise UserError(f"{args.src} is an image ViT: pass --preset NAME to choose the video model") from None
        model = create_model(args.preset, pretrained=args.src)
    if args.to == "official":
        sd = export_official_state_dict(model)
        atomic_write(dst, lambda p: torch.save(sd, p))
        print(f"wrote {dst} ({len(sd)} tensors, official layout)", file=sys.stderr)
    elif args.to == "mmaction2":
        save_mmaction2(dst, export_official_state_dict(model), model.labels)
        order = _mmaction2_order(model.labels)
        print(f"wrote {dst} (MMAction2 layout: backbone + cls_head.fc_cls, {model.cfg.num_classes} head rows {order})",
              file=sys.stderr)
    else:
        model.save_pretrained(dst)
        print(f"wrote {dst}/ (config.json + model.safetensors; {model.load_report.summary() if model.load_report else ''})",
              file=sys.stderr)
    return 0


def _mmaction2_order(labels) -> str:
    from ..weights.mmaction2 import mmaction2_label_map

    if labels is None:
        return "as in the model (no class names)"
    name = mmaction2_label_map(labels)
    return f"in MMAction2's {name} order" if name else "as in the model (names in meta.dataset_meta.classes)"
