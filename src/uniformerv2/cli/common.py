"""The options every command spells the same way, defined once (README, "Command line").

| option | meaning |
|---|---|
| ``--output/-o`` | what the command writes (a file or a folder); older spellings stay accepted, unlisted |
| ``--preset`` | a model preset (``uniformerv2 models``), nothing else |
| ``--device`` | ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (default: cuda if available, else cpu) |
| ``--dtype`` | the compute dtype: ``fp32``, ``bf16``, ``fp16`` |
| ``--backend`` | what runs the model: ``torch``, or ``onnxruntime`` (CPU; ``--quantize int8``: int8 weights) |
| ``--workers`` | worker processes; not given: chosen from the work; 0: none (work in the command's process) |
| ``--quiet`` | no progress bar |
| ``--seed`` | random seed |

Results go to stdout, messages (progress, "wrote ...", warnings, errors) to stderr. Exit codes: 0 done; 1 the
command ran but some inputs failed (each reported) or its result failed a check; 2 bad usage, a bad argument
or a file the command needs is missing or unreadable (nothing done).
"""
from __future__ import annotations

import argparse
import copy
import re

from ..errors import UserError

DTYPES = ("fp32", "bf16", "fp16")
BACKENDS = ("torch", "onnxruntime")   # uniformerv2.inference.runtime.BACKENDS
QUANTIZE = ("none", "int8")
_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


class HideAliases(argparse.HelpFormatter):
    """Leaves an option's old spellings (``action.hidden_aliases``) out of ``--help``; they still parse."""

    def _format_action_invocation(self, action):
        hidden = getattr(action, "hidden_aliases", ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)


def formatter_with_hidden_aliases(cls: type) -> type:
    """``cls`` (a help formatter class) that also hides old spellings."""
    if issubclass(cls, HideAliases):
        return cls
    return type(cls.__name__, (HideAliases, cls), {})


# ------------------------------------------------------------------------------------------ value types
def device_arg(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a device: auto, cpu, cuda, cuda:N or mps")
    return value


def at_least(minimum: int):
    """An argparse type: a whole number, ``minimum`` or more."""
    def whole(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {n}")
        return n
    return whole


workers_arg = at_least(0)


# ------------------------------------------------------------------------------------------ the options
def add_output(p, *, help: str, metavar: str = "DIR", required: bool = False, default=None,
               aliases: tuple[str, ...] = (), positional: str | None = None):
    """``--output/-o`` (dest ``output``) plus the command's old spellings: ``aliases`` (options such as
    ``--out``) and ``positional`` (the metavar of a former positional argument), accepted and not listed."""
    a = p.add_argument("--output", "-o", *aliases, dest="output", metavar=metavar, default=default,
                       required=required and positional is None, help=help)
    a.hidden_aliases = set(aliases)
    if positional is not None:
        p.add_argument("_output_positional", nargs="?", metavar=positional, help=argparse.SUPPRESS)
        p.set_defaults(_output_required=required)
    return a


def settle_output(args) -> None:
    """Fold the old positional spelling of the output into ``args.output`` (once the arguments are parsed)."""
    if not hasattr(args, "_output_positional"):
        return
    pos = args.__dict__.pop("_output_positional")
    required = args.__dict__.pop("_output_required", False)
    if pos is not None:
        if args.output is not None and args.output != pos:
            raise UserError(f"two outputs given: {pos} and --output {args.output}")
        args.output = pos
    if required and args.output is None:
        raise UserError("the following arguments are required: --output/-o")


def add_preset(p, help: str = "model preset (`uniformerv2 models`), e.g. k400_b16_8x224", **kw):
    return p.add_argument("--preset", metavar="NAME", help=help, **kw)


def add_device(p, default=None, help: str | None = None):
    return p.add_argument("--device", type=device_arg, default=default, metavar="DEVICE",
                          help=help or "cpu, cuda, cuda:1, mps ... (default: cuda if available, else cpu)")


def add_dtype(p, default=None, help: str = "compute dtype (default: bf16 on GPU, fp32 on CPU)"):
    return p.add_argument("--dtype", choices=DTYPES, default=default, help=help)


def add_backend(p):
    """``--backend`` and ``--quantize`` (dests ``backend``, ``quantize``): how the model runs (inference)."""
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="what runs the model: torch (default), or onnxruntime (CPU, fp32: the model is exported "
                        "to ONNX once and cached; needs pip install 'uniformerv2[onnx]')")
    p.add_argument("--quantize", choices=QUANTIZE, default="none",
                   help="with --backend onnxruntime: int8 runs the linear layers with int8 weights (faster, "
                        "probabilities within about 0.05 of fp32); default none")


def backend_signature(args) -> dict:
    """What ``--backend`` / ``--quantize`` add to a recorded run's signature (nothing for the defaults, so that
    runs recorded before these options resume)."""
    out = {}
    if getattr(args, "backend", "torch") != "torch":
        out["backend"] = args.backend
    if getattr(args, "quantize", "none") != "none":
        out["quantize"] = args.quantize
    return out


def add_workers(p, what: str = "processes that decode videos"):
    return p.add_argument("--workers", type=workers_arg, default=None, metavar="N",
                          help=f"{what} (default: chosen from the work; 0: none, all in this process)")


def add_quiet(p):
    return p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_seed(p, default=None, help: str | None = None):
    return p.add_argument("--seed", type=int, default=default, metavar="N",
                          help=help or "random seed" + (f" (default: {default})" if default is not None else ""))


def add_views(p, help: str = "test views, clips x crops (default: the model's, e.g. 4x3)"):
    return p.add_argument("--views", metavar="CxK", help=help)


def workers_for(tasks: int) -> int:
    """The default of ``--workers`` for commands with one job per file: the usable cores, one per job at most."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, tasks))
