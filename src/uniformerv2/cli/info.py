"""`uniformerv2 info MODEL`: what a weights file, model directory or pretrained name holds."""
from __future__ import annotations

FORMATS = {"official": "official UniFormerV2 checkpoint", "uniformerv2": "uniformerv2 checkpoint",
           "mmaction2": "MMAction2 UniFormerV2 checkpoint (Recognizer3D: backbone + cls_head)"}


def add_parser(sub):
    p = sub.add_parser("info", help="describe a checkpoint (official, MMAction2, ours), image-ViT file, model "
                                    "directory or pretrained name")
    p.add_argument("path", metavar="MODEL",
                   help="model directory, weights file, or a pretrained name (`uniformerv2 models --pretrained`; "
                        "downloaded once)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..factory import infer_options, lookup
    from ..weights.download import fetch
    from ..weights.format import is_model_dir, read_config, read_weights
    from ..weights.io import load_state_dict
    from ..weights.loading import ImageWeightsError, read_checkpoint
    from ..weights.vit import to_clip_visual

    path, order = args.path, None
    if not Path(path).exists():
        entry = lookup(path)
        path = fetch(entry)
        top1 = f"; reported top-1 {entry.top1} on {entry.views or '?'} views" if entry.top1 is not None else ""
        print(f"name: {entry.name} ({entry.dataset or 'no dataset given'}; "
              f"{'preset ' + entry.preset if entry.is_video_model else 'arms ' + entry.arch}{top1})")
        print(f"file: {path} ({entry.layout} layout, sha256 {entry.sha256} verified; source {entry.urls[0]})")
        if entry.is_video_model:
            order = (f"{entry.labels} (registry)" if isinstance(entry.labels, str)
                     else f"{len(entry.labels)} class names given by the registry entry")
    if is_model_dir(path):
        cfg = read_config(path)
        sd, fmt = read_weights(path), "uniformerv2 model directory"
        opts, labels = cfg["model"], cfg.get("labels")
        extra = {"preset": cfg.get("preset"), "frames": opts["num_frames"]}
    else:
        try:
            sd, fmt, labels = read_checkpoint(path)
            opts = infer_options(sd)
            if fmt == "mmaction2" and order is None:
                order = _mmaction2_order(labels)
            fmt = FORMATS[fmt]
            extra = {}
        except ImageWeightsError:
            visual, kind = to_clip_visual(load_state_dict(path))
            sd = visual
            width = visual["conv1.weight"].shape[0]
            depth = 1 + max(int(k.split(".")[2]) for k in visual if k.startswith("transformer.resblocks."))
            grid = int(round((visual["positional_embedding"].shape[0] - 1) ** 0.5))
            patch = visual["conv1.weight"].shape[-1]
            print(f"format: image ViT ({kind}); use it as pretrained= / --pretrained to arm a model")
            print(f"backbone: width {width}, {depth} layers, patch {patch}, {grid * patch}px")
            print(f"parameters: {sum(t.numel() for t in visual.values()):,}")
            return 0
    print(f"format: {fmt}")
    print(f"arch: {opts['arch']} (width {opts['embed_dim']}, {opts['depth']} layers, patch {opts['patch_size']}, "
          f"{opts['img_size']}px)")
    print(f"design: local MHRA {opts['local_mhra']}, temporal downsample {opts['temporal_downsample']}, "
          f"global layers {opts['global_layers']}, frozen backbone {opts['frozen_backbone']}")
    print(f"parameters: {sum(t.numel() for k, t in sd.items() if 'running' not in k and 'num_batches' not in k):,}")
    print(f"classes: {opts['num_classes']}" + (f" (labels: {', '.join(labels[:3])}, ...)" if labels else ""))
    if order is not None:
        print(f"label order of the head rows: {order}")
    for k, v in extra.items():
        print(f"{k}: {v}")
    return 0


def _mmaction2_order(labels) -> str:
    from ..labels import load_labels
    from ..weights.mmaction2 import MMACTION2_HEAD_LABELS

    if labels is None:
        return "unknown (no MMAction2 label map has this many classes and the file names none)"
    name = MMACTION2_HEAD_LABELS.get(len(labels))
    if name is not None and list(labels) == load_labels(name):
        alpha = " (alphabetical)" if labels == sorted(labels) else ""
        return f"MMAction2's {name}{alpha}; mapped by class name when loaded into a preset"
    return "the class names in the file's meta (dataset_meta.classes)"
