"""Reading weight files safely: safetensors, torch zip/legacy files with ``weights_only=True``, OpenAI's
TorchScript CLIP archives, and the Keras port's HDF5 files (``keras.py``, read with h5py).  Nothing here
unpickles arbitrary objects.

SlowFast training checkpoints pickle a ``yacs`` ``CfgNode`` beside the weights; that one class (a dict
subclass) is read into an inert stand-in dict so the weights can be used.  Any other non-tensor global
is refused, unless the caller asks for ``drop_foreign=True``: then every such object is read as an inert
:class:`Foreign` marker (its class is never imported, its arguments are kept as plain data and nothing of
it runs) and the caller decides what to do with it (MMAction2's ``meta`` drops them with a warning).
Globals of the modules torch blocks outright (``os``, ``sys``, ``posix``, ``nt``) are always refused.
"""
from __future__ import annotations

import collections
import json
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError
from .keras import HDF5_MAGIC, is_hdf5, load_keras_h5
from .savedmodel import is_savedmodel_zip, load_savedmodel_zip

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


# ----------------------------------------------------------------------------- what a file looks like
_SNIFF = 4096


def _text_of(head: bytes) -> str | None:
    """``head`` (a file's first bytes) as text when it reads as text: UTF-8 (a character cut at the end of the
    sample aside) without control bytes other than whitespace; else None."""
    head = head.removeprefix(b"\xef\xbb\xbf")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            return None
        text = head[:e.start].decode("utf-8")
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
        return None
    return text


def _what_else(head: bytes) -> tuple[str, str] | None:
    """(what a file that is not weights looks like, what to do), from ``head``, its first bytes; None when not
    recognised."""
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return ("a Git LFS pointer (a small text file standing for the real one)",
                "fetch the file itself (`git lfs pull` in its repository, or download it)")
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "a video (MP4/QuickTime)", ""
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE", b"WEBP"):
        return {b"AVI ": "a video (AVI)", b"WAVE": "an audio file (WAV)", b"WEBP": "an image (WebP)"}[head[8:12]], ""
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "a video (Matroska/WebM)", ""
    if head[:3] == b"FLV":
        return "a video (FLV)", ""
    if head[:4] == b"\x00\x00\x01\xba" or (len(head) > 188 and head[0] == head[188] == 0x47):
        return "a video (MPEG)", ""
    if head[:4] == b"OggS":
        return "an Ogg media file", ""
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff" or head[:4] == b"GIF8":
        return "an image (PNG/JPEG/GIF)", ""
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[257:262] == b"ustar":
        return "a compressed archive (gzip/bzip2/xz/tar)", "unpack it first"
    text = _text_of(head)
    if text is None:
        return None
    stripped = text.lstrip()
    low = stripped[:1024].lower()
    if low.startswith(("<!doctype html", "<html")) or (low.startswith("<") and "<html" in low):
        return ("an HTML page", "a web page (an error or sign-in page?) was saved in place of the file: "
                                "download the file itself")
    if low.startswith("<?xml"):
        return "an XML document (a server's error reply?)", "download the file itself"
    if not stripped:
        return "a text file of blank lines", ""
    first = stripped.splitlines()[0].strip()
    if re.match(r"^(https?|ftp|s3|gs)://\S+$", first):
        return f"a text file holding a URL ({first[:200]})", "download that URL and give the downloaded file"
    return f"{'a JSON text file' if stripped[0] in '{[' else 'a text file'} (it begins {first[:60]!r})", ""


def _safetensors_end(head: bytes, size: int) -> tuple[int, int] | None:
    """(header length, bytes the header says the file has) when ``head`` starts like a safetensors file."""
    if len(head) < 10 or head[8:9] != b"{":
        return None
    n = struct.unpack("<Q", head[:8])[0]
    if n < 2 or n > 100 * 2**20:
        return None
    return n, 8 + n


def sniff(path: str | Path) -> None:
    """Refuse, in one line that says what the file looks like, a file that cannot be weights: empty, text, an
    HTML page, a Git LFS pointer, a video or image, an archive, or a weights file cut short.  A file that looks
    like weights (a zip archive, a pickle, a safetensors file, an HDF5 file of Keras weights) passes."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such file: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a weights file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a weights file: download it again")
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
        if head[:4] == b"PK\x03\x04":  # torch's zip archive (and TorchScript): its directory sits at the end
            f.seek(max(0, size - (1 << 16) - 22))
            if b"PK\x05\x06" not in f.read():
                raise CheckpointError(f"{path} is truncated: a zip archive (torch's format) without its end "
                                      f"({size:,} bytes); download it again")
            return
    if head[:8] == HDF5_MAGIC:
        return  # Keras weights (read with h5py, which says when the file is cut short)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return  # a pickle: torch's legacy format (read with weights_only)
    st = _safetensors_end(head, size)
    if st is not None:
        n, need = st
        if need > size:
            raise CheckpointError(f"{path} is truncated: a safetensors file whose header alone needs {need:,} "
                                  f"bytes, of {size:,}; download it again")
        try:
            with open(path, "rb") as f:
                f.seek(8)
                header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return  # let the reader say what is wrong with it
        if 8 + n + end > size:
            raise CheckpointError(f"{path} is truncated: a safetensors file of {8 + n + end:,} bytes cut at "
                                  f"{size:,}; download it again")
        return
    what = _what_else(head)
    if what is None:
        raise CheckpointError(f"{path} is not a weights file: neither a torch file (zip or pickle) nor safetensors "
                              f"(it begins with the bytes {head[:8].hex(' ')})")
    raise CheckpointError(f"{path} is {what[0]}, not a weights file" + (f": {what[1]}" if what[1] else ""))


def safetensors_shapes(path: str | Path) -> dict[str, list[int]] | None:
    """The tensor names and shapes of a safetensors file, read from its header alone (the weights are not
    read); None when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    sniff(path)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        try:
            header = json.loads(f.read(n))
            return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"cannot read {path}: a safetensors header that is not valid JSON") from None


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
            if name is None and got is None and (not msg or msg.startswith(("Unsupported operand", "String is too"))):
                why = f": {msg}" if msg else ""
                raise CheckpointError(f"{path} is damaged or truncated (a pickle that breaks off{why}); download "
                                      "it again") from None
            _refuse(path, name or (got.group(1) if got else None))
        except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, zipfile.BadZipFile,
                KeyError, IndexError, struct.error, OverflowError, MemoryError) as e:
            detail = " ".join(str(e).split())[:200]
            broken = (EOFError, KeyError, IndexError, struct.error, OverflowError, MemoryError, zipfile.BadZipFile)
            if not detail or isinstance(e, broken) or re.search(r"unexpected EOF|corrupt|central directory", detail):
                raise CheckpointError(f"{path} is damaged or truncated (reading it failed with {type(e).__name__}"
                                      f"{': ' + detail if detail else ''}); download it again") from None
            raise CheckpointError(f"cannot read {path}: {detail}") from None
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
    sniff(path)  # one line that says what the file is when it cannot be weights
    if is_hdf5(path):  # the Keras port's weights, returned in the official layout
        return load_keras_h5(path)
    if is_savedmodel_zip(path):  # the port's zipped TensorFlow SavedModel, likewise
        return load_savedmodel_zip(path)
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
