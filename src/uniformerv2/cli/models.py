"""`uniformerv2 models [PATTERN]`: the archs and the official zoo's presets."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("models", help="list architectures and presets")
    p.add_argument("pattern", nargs="?", default=None, help="glob filter, e.g. 'k400_*'")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..model.presets import ARCHS, get_preset, list_models, list_presets

    archs = list_models(args.pattern)
    if archs:
        print("architectures:")
        for name in archs:
            a = ARCHS[name]
            print(f"  {name:<22} width {a['embed_dim']}, {a['depth']} layers, patch {a['patch_size']}, {a['img_size']}px")
    presets = list_presets(args.pattern)
    if presets:
        print("presets (arch + recipe):")
        for name in presets:
            p = get_preset(name)
            print(f"  {name:<26} {p.description}")
    return 0
