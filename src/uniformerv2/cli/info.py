"""`uniformerv2 info PATH`: what a weights file or model directory holds."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("info", help="describe a checkpoint, image-ViT file or model directory")
    p.add_argument("path")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import CheckpointError
    from ..factory import infer_options
    from ..weights.format import is_model_dir, read_config, read_weights
    from ..weights.io import load_state_dict
    from ..weights.loading import read_checkpoint
    from ..weights.vit import to_clip_visual

    path = args.path
    if is_model_dir(path):
        cfg = read_config(path)
        sd, fmt = read_weights(path), "uniformerv2 model directory"
        opts, labels = cfg["model"], cfg.get("labels")
        extra = {"preset": cfg.get("preset"), "frames": opts["num_frames"]}
    else:
        try:
            sd, fmt, labels = read_checkpoint(path)
            opts = infer_options(sd)
            fmt = {"official": "official UniFormerV2 checkpoint", "uniformerv2": "uniformerv2 checkpoint"}[fmt]
            extra = {}
        except CheckpointError as e:
            if "image-ViT" not in str(e):
                raise
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
    for k, v in extra.items():
        print(f"{k}: {v}")
    return 0
