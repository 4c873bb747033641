"""`uniformerv2 info MODEL`: what a weights file, model directory or pretrained name holds."""
from __future__ import annotations

FORMATS = {"official": "official UniFormerV2 checkpoint", "uniformerv2": "uniformerv2 checkpoint",
           "mmaction2": "MMAction2 UniFormerV2 checkpoint (Recognizer3D: backbone + cls_head)",
           "model_dir": "uniformerv2 model directory",
           "keras": "Keras .h5 weights of the TensorFlow port (read by position into the official layout)",
           "keras_savedmodel": "zipped TensorFlow SavedModel of the TensorFlow port (its variables read by position "
                               "into the official layout)"}


def add_parser(sub):
    p = sub.add_parser("info", help="describe a checkpoint (official, MMAction2, ours), image-ViT file, model "
                                    "directory or pretrained name")
    p.add_argument("path", metavar="MODEL",
                   help="model directory, weights file, or a pretrained name (`uniformerv2 models --pretrained`; "
                        "downloaded once)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..factory import describe, parameter_count
    from ..weights.download import cache_path, is_cached

    src = describe(args.path)  # a name is answered from the registry: nothing is downloaded
    entry, order = src.entry, None
    if entry is not None:
        top1 = f"; reported top-1 {entry.top1} on {entry.views or '?'} views" if entry.top1 is not None else ""
        print(f"name: {entry.name} ({entry.dataset or 'no dataset given'}; "
              f"{'preset ' + entry.preset if entry.is_video_model else 'arms ' + entry.arch}{top1})")
        size = f"{entry.size:,} bytes" if entry.size else "size not published"
        digest = f"sha256 {entry.sha256}" if entry.verified_source else "no published digest: unverified source"
        print(f"file: {entry.file} ({size}, {entry.layout} layout, {digest}; source {entry.urls[0]})")
        print(f"cache: {cache_path(entry)}" if is_cached(entry) else
              f"cache: not downloaded (`uniformerv2 download {entry.name}` fetches it into {cache_path(entry).parent})")
        if entry.is_video_model:
            order = (f"{entry.labels} (registry)" if isinstance(entry.labels, str)
                     else f"{len(entry.labels)} class names given by the registry entry")
    elif src.format == "mmaction2":
        order = _mmaction2_order(src.labels)
    count = parameter_count(src)
    if src.start == "image":
        b = src.backbone
        print(f"format: image ViT ({src.format}); use it as pretrained= / --pretrained to arm a model")
        print(f"backbone: width {b['embed_dim']}, {b['depth']} layers, patch {b['patch_size']}, {b['img_size']}px"
              + (f" ({src.arch})" if src.arch else ""))
        if count is not None:
            print(f"parameters: {count:,}")
        return 0
    opts = src.model
    print(f"format: {FORMATS.get(src.format, src.format)}")
    print(f"arch: {opts['arch']} (width {opts['embed_dim']}, {opts['depth']} layers, patch {opts['patch_size']}, "
          f"{opts['img_size']}px)")
    print(f"design: local MHRA {opts['local_mhra']}, temporal downsample {opts['temporal_downsample']}, "
          f"global layers {opts['global_layers']}, frozen backbone {opts['frozen_backbone']}")
    print(f"parameters: {count:,}" + (" (of the model it loads into)" if entry is not None else ""))
    labels = src.labels
    print(f"classes: {opts['num_classes']}" + (f" (labels: {', '.join(labels[:3])}, ...)" if labels else ""))
    if order is not None:
        print(f"label order of the head rows: {order}")
    if src.format == "model_dir" or entry is not None:
        print(f"preset: {src.preset}")
        print(f"frames: {opts['num_frames']}")
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
