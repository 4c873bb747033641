"""Command-line interface: ``uniformerv2 <command> ...``.

Each command lives in its own module ``uniformerv2.cli.<name>`` exposing ``add_parser(subparsers)``
(which registers the sub-parser and sets ``func``) and is listed in ``COMMANDS``.  The CLI is a thin
layer over the Python API; every expected failure is raised as :class:`uniformerv2.errors.UserError`
(or an ``OSError``/``ValueError`` from bad input) and printed as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from ..errors import UserError

COMMANDS = [
    "models", "download", "info", "convert", "bench", "scan", "prepare", "synth",
    "train", "finetune", "eval", "predict", "features", "export", "ablate",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad-usage path
        self.exit(2, f"uniformerv2: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="uniformerv2", description="UniFormerV2 video action recognition")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        modname = f"{__name__}.{name.replace('-', '_')}"
        if importlib.util.find_spec(modname) is None:
            continue
        importlib.import_module(modname).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("uniformerv2: interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, IsADirectoryError, PermissionError, ValueError) as e:
        print(f"uniformerv2: error: {_one_line(e)}", file=sys.stderr)
        return 2
    return int(rc or 0)


def _one_line(e: BaseException) -> str:
    msg = str(e) or e.__class__.__name__
    return " ".join(msg.split())


if __name__ == "__main__":
    sys.exit(main())
