"""`uniformerv2 download NAME...`: fetch registry weights into the cache ahead of time."""
from __future__ import annotations

from .common import add_quiet


def add_parser(sub):
    p = sub.add_parser("download", help="download pretrained weights by name into the cache",
                       description="Fetch, verify and cache pretrained weights (see `uniformerv2 models --pretrained`). "
                                   "NAME is PRESET.TAG, a bare preset (its default weights) or a glob like 'k400_*'.")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--force", action="store_true", help="download again even if the file is cached")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import UserError
    from ..weights.download import fetch
    from ..weights.registry import get_entry, list_entries

    entries = []
    for name in args.names:
        if any(c in name for c in "*?["):
            found = list_entries(name)
            if not found:
                raise UserError(f"no pretrained weights match {name!r}; see `uniformerv2 models --pretrained`")
            entries += found
        else:
            entries.append(get_entry(name))
    seen = set()
    for entry in entries:
        if entry.name in seen:
            continue
        seen.add(entry.name)
        path = fetch(entry, progress=False if args.quiet else None, force=args.force)
        print(f"{entry.name}: {path} ({path.stat().st_size / 1e6:,.1f} MB)")
    return 0
