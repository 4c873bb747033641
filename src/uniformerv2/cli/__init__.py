"""Command-line interface: ``uniformerv2 <command> ...``.

Each command lives in its own module ``uniformerv2.cli.<name>`` exposing ``add_parser(subparsers)``
(which registers the sub-parser and sets ``func``) and is listed in ``COMMANDS``; the options they share
(``--output/-o``, ``--preset``, ``--device``, ``--dtype``, ``--workers``, ``--quiet``) are defined once in
``uniformerv2.cli.common``. The CLI is a thin layer over the Python API.

Results go to stdout; messages (progress, "wrote ...", warnings, errors) to stderr. Exit codes:

- 0: done;
- 1: the command ran, but some of its inputs failed (each one reported) or its result failed a check;
- 2: bad usage, a bad argument, or a file the command needs is missing or unreadable: nothing was done.
  Expected failures (:class:`uniformerv2.errors.UserError` and missing / unreadable files) are one line;
  anything else is a bug and keeps its traceback.
- 130: interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from ..errors import UserError
from .common import formatter_with_hidden_aliases, settle_output

COMMANDS = [
    "models", "download", "info", "convert", "bench", "scan", "lists", "prepare", "synth",
    "train", "finetune", "eval", "predict", "features", "explain", "live", "serve", "export", "ablate", "demo",
]

# What a user's input can raise besides UserError: a missing or unreadable file named on the command line.
EXPECTED = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad-usage path
        self.exit(2, f"uniformerv2: error: {message}\n")

    def _get_formatter(self):  # every command's help leaves old spellings of its options out
        return formatter_with_hidden_aliases(self.formatter_class)(prog=self.prog)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="uniformerv2", description="UniFormerV2 video action recognition")
    parser.add_argument("--version", action="version", version=f"uniformerv2 {__version__}")
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
        settle_output(args)
        rc = args.func(args)
    except KeyboardInterrupt:
        print("uniformerv2: interrupted", file=sys.stderr)
        return 130
    except EXPECTED as e:
        print(f"uniformerv2: error: {_one_line(e)}", file=sys.stderr)
        return 2
    return int(rc or 0)


def _one_line(e: BaseException) -> str:
    msg = str(e) or e.__class__.__name__
    return " ".join(msg.split())


if __name__ == "__main__":
    sys.exit(main())
