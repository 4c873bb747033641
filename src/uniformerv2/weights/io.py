"""Reading weight files safely: safetensors, torch zip/legacy files with ``weights_only=True``, and
OpenAI's TorchScript CLIP archives.  Nothing here unpickles arbitrary objects.

SlowFast training checkpoints pickle a ``yacs`` ``CfgNode`` beside the weights; that one class (a dict
subclass) is read into an inert stand-in dict so the weights can be used.  Any other non-tensor global
is refused.
"""
from __future__ import annotations

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


def _torch_load(path: Path):
    stubs: list[type] = []
    for _ in range(len(_INERT_DICT_GLOBALS) + 1):
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            m = re.search(r"GLOBAL ([\w.]+)", str(e))
            name = m.group(1) if m else None
            if name in _INERT_DICT_GLOBALS and name not in {f"{s.__module__}.{s.__qualname__}" for s in stubs}:
                stubs.append(_inert(name))
                continue
            what = f"it needs {name}" if name else "it is not a plain weights file"
            raise CheckpointError(f"refusing to unpickle {path}: {what}, which could run code "
                                  "(only tensors, containers and plain values are loaded)") from None
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"cannot read {path}: {' '.join(str(e).split())[:200]}") from None
    raise CheckpointError(f"cannot read {path}")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_file(path: str | Path) -> dict:
    """Load a weights file into a dict (the top-level object for torch files)."""
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
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from any supported file, unwrapping the usual containers
    (``model_state`` of SlowFast, ``state_dict``, ``model``, ``module``) and a ``module.`` prefix."""
    obj = load_file(path)
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
