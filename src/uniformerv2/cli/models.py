"""`uniformerv2 models [PATTERN] [--pretrained]`: the archs, the official zoo's presets, and the
pretrained weights that can be downloaded by name."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("models", help="list architectures and presets (--pretrained: downloadable weights)")
    p.add_argument("pattern", nargs="?", default=None,
                   help="glob filter, e.g. 'k400_*' (no glob characters: names starting with it); matching nothing "
                        "is an error")
    p.add_argument("--pretrained", action="store_true",
                   help="list the pretrained weights by name: dataset, frames x size, reported top-1, size, cached")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.pretrained:
        return _pretrained(args.pattern)
    from ..model.presets import ARCHS, get_preset, list_models, list_presets

    pattern = _glob(args.pattern)
    archs, presets = list_models(pattern), list_presets(pattern)
    if not archs and not presets:
        from ..errors import UserError

        raise UserError(f"no architecture or preset matches {args.pattern!r}; see `uniformerv2 models`")
    if archs:
        print("architectures:")
        for name in archs:
            a = ARCHS[name]
            print(f"  {name:<22} width {a['embed_dim']}, {a['depth']} layers, patch {a['patch_size']}, {a['img_size']}px")
    if presets:
        from ..weights.registry import entries_for

        print("presets (arch + recipe; [weights] = pretrained tags, loaded as PRESET.TAG):")
        for name in presets:
            p = get_preset(name)
            tags = [e.tag for e in entries_for(name)]
            print(f"  {name:<26} {p.description}" + (f"  [{', '.join(tags)}]" if tags else ""))
    return 0


def _glob(pattern: str | None) -> str | None:
    """A pattern without glob characters matches the names that start with it."""
    return pattern if pattern is None or any(c in pattern for c in "*?[") else f"{pattern}*"


def _size(entry) -> str:
    return f"{entry.size / 1e6:,.0f} MB" if entry.size else "?"


def _digest(entry) -> str:
    return "sha256" if entry.full_digest else "prefix" if entry.verified_source else "unverified source"


def _pretrained(pattern) -> int:
    from ..errors import UserError
    from ..model.presets import ARCHS, PRESETS
    from ..weights.download import is_cached, weights_dir
    from ..weights.registry import list_entries

    entries = list_entries(_glob(pattern))
    if not entries:
        raise UserError(f"no pretrained weights match {pattern!r}")
    rows = [("name", "dataset", "input", "top-1", "views", "size", "layout", "digest", "cached")]
    for e in entries:
        if e.preset in PRESETS:
            p = PRESETS[e.preset]
            shape = f"{p.num_frames}x{p.crop_size}"
        else:
            shape = f"image {ARCHS[e.arch]['img_size']}" if e.arch in ARCHS else "?"
        rows.append((e.name, e.dataset, shape, f"{e.top1:.1f}" if e.top1 is not None else "-", e.views or "-",
                     _size(e), e.layout, _digest(e), "yes" if is_cached(e) else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\ncache: {weights_dir()}  (top-1 as reported by the file's publisher; size ? = not published; "
          "digest: the file is checked against a published sha256, its published prefix, or nothing "
          "(unverified source: a third party's copy))")
    return 0
