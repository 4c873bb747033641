"""Reading weight files safely: safetensors, torch zip/legacy files with ``weights_only=True``, and
OpenAI's TorchScript CLIP archives.  Nothing here unpickles arbitrary objects.

SlowFast training checkpoints pickle a ``yacs`` ``CfgNode`` beside the weights; that one class (a dict
subclass) is read into an inert stand-in dict so the weights can be used.  Any other non-tensor global
is refused, unless the caller asks for ``drop_foreign=True``: then every such object is read as an inert
:class:`Foreign` marker (its class is never imported, its arguments are kept as plain data and nothing of
it runs) and the caller decides what to do with it (MMAction2's ``meta`` drops them with a warning).
Globals of the modules torch blocks outright (``os``, ``sys``, ``posix``, ``nt``) are always refused.
"""
from __future__ import annotations

import collections
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError

# Globals that only carry configuration (dict subclasses); read as plain dicts, never imported.
_INERT_DICT_GLOBALS = ("yacs.config.CfgNode", "fvcore.common.config.CfgNode", "collections.OrderedDict")


def _inert(qualified: str) -> type:
    """A stand-in class under a foreign name whose instances are plain dicts."""
    module, _, name = qualified.rpartition(".")
    return type(name, (dict,), {"__module__": module, "__qualname__": name, "__new__": lambda cls, *a, **k: {}})


class Foreign:
    """Stands for an object of a class the file names but that is never imported (``drop_foreign=True``).

    ``name`` is the class or function the file asked for; ``args``/``state`` are the plain data it
    carried (kept only for messages); ``items`` what a dict-like one held."""

    __slots__ = ("name", "args", "state", "items")

    def __init__(self, name: str, args=(), state=None, items=None):
        self.name, self.args, self.state, self.items = name, args, state, items

    def __repr__(self):
        return f"<{self.name}, not imported>"


_MAX_FOREIGN = 64


def _foreign_stub(qualified: str) -> type:
    """A stand-in under a foreign name: calling or building it only records plain data."""

    def new(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args = args
        return obj

    def setstate(self, state):
        self.state = state

    module, _, name = qualified.rpartition(".")
    return type(name, (), {"__module__": module, "__qualname__": name, "__new__": new, "__init__": lambda s, *a, **k: None,
                           "__setstate__": setstate, "__slots__": ("args", "state"), "_foreign": qualified})


def _dict_stub(qualified: str) -> type:
    """A stand-in for a foreign dict subclass (pickled with SETITEMS): read as an OrderedDict tagged
    with the foreign name (the unpickler only fills exact dict types)."""

    def new(cls, *args, **kwargs):
        d = collections.OrderedDict()
        d.__dict__["_foreign"] = qualified
        return d

    module, _, name = qualified.rpartition(".")
    return type(name, (), {"__module__": module, "__qualname__": name, "__new__": new, "_foreign": qualified})


def _unstub(obj):
    """Replace stand-ins by :class:`Foreign` markers (recursively, through dicts, lists and tuples)."""
    tag = getattr(obj, "_foreign", None) if not isinstance(obj, torch.Tensor) else None
    if tag is not None:
        if isinstance(obj, dict):
            return Foreign(tag, items={k: _unstub(v) for k, v in obj.items()},
                           state={k: v for k, v in vars(obj).items() if k != "_foreign"} or None)
        return Foreign(tag, getattr(obj, "args", ()), getattr(obj, "state", None))
    if isinstance(obj, dict):
        for k, v in obj.items():
            new = _unstub(v)
            if new is not v:
                obj[k] = new
        return obj
    if isinstance(obj, list):
        return [_unstub(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_unstub(v) for v in obj)
    return obj


def _refuse(path: Path, name: str | None):
    what = f"it needs {name}" if name else "it is not a plain weights file"
    raise CheckpointError(f"refusing to unpickle {path}: {what}, which could run code "
                          "(only tensors, containers and plain values are loaded)") from None


def _torch_load(path: Path, drop_foreign: bool = False):
    stubs: dict[str, type] = {}
    dict_like: set[str] = set()
    for _ in range(len(_INERT_DICT_GLOBALS) + (2 * _MAX_FOREIGN if drop_foreign else 0) + 1):
        try:
            with torch.serialization.safe_globals(list(stubs.values())):
                obj = torch.load(path, map_location="cpu", weights_only=True)
            return _unstub(obj) if drop_foreign else obj
        except pickle.UnpicklingError as e:
            msg = str(e)
            m = re.search(r"GLOBAL ([\w.]+)", msg)
            name = m.group(1) if m else None
            if name and "." not in name:  # torch writes builtins.X as X
                name = f"builtins.{name}"
            if name in _INERT_DICT_GLOBALS and name not in stubs:
                stubs[name] = _inert(name)
                continue
            if drop_foreign and name and name not in stubs and "is blocked" not in msg:
                stubs[name] = _foreign_stub(name)
                continue
            got = re.search(r"SETITEMS? for dict.*but got <class '([\w.]+)'>", msg)
            if drop_foreign and got and got.group(1) in stubs and got.group(1) not in dict_like:
                dict_like.add(got.group(1))
                stubs[got.group(1)] = _dict_stub(got.group(1))
                continue
            _refuse(path, name or (got.group(1) if got else None))
        except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"cannot read {path}: {' '.join(str(e).split())[:200]}") from None
    raise CheckpointError(f"cannot read {path}: too many foreign objects")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_file(path: str | Path, *, drop_foreign: bool = False) -> dict:
    """Load a weights file into a dict (the top-level object for torch files).

    drop_foreign: read objects of classes that would need importing as inert :class:`Foreign` markers
    instead of refusing the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such file: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a weights file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file as st_load

        try:
            return st_load(str(path))
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"cannot read {path}: {' '.join(str(e).split())[:200]}") from None
    if _is_torchscript(path):  # OpenAI's CLIP files; TorchScript is deprecated but the only way to read them
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except RuntimeError as e:
            raise CheckpointError(f"cannot read TorchScript archive {path}: {str(e).splitlines()[0][:200]}") from None
    obj = _torch_load(path, drop_foreign=drop_foreign)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from any supported file, unwrapping the usual containers
    (``model_state`` of SlowFast, ``state_dict``, ``model``, ``module``) and a ``module.`` prefix."""
    return unwrap_state_dict(load_file(path), path)


def first_foreign(obj) -> Foreign | None:
    """The first :class:`Foreign` marker in a loaded object (dicts, lists and tuples searched), or None."""
    if isinstance(obj, Foreign):
        return obj
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    for v in values:
        found = first_foreign(v)
        if found is not None:
            return found
    return None


def refuse_foreign(obj, path) -> None:
    """Refuse an object read with ``drop_foreign=True`` that holds a foreign object, as a plain
    :func:`load_file` would have."""
    found = first_foreign(obj)
    if found is not None:
        _refuse(Path(path), found.name)


def unwrap_state_dict(obj: dict, path) -> dict[str, torch.Tensor]:
    """The flat ``{name: tensor}`` of a loaded file (see :func:`load_state_dict`)."""
    for key in ("model_state", "state_dict", "model", "module"):
        inner = obj.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{path} contains no tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd
