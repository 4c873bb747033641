"""The ``onnxruntime`` backend of the inference engine: the model's forward pass as a cached ONNX file run by
ONNX Runtime on the CPU, in fp32 or with int8 weights.

    VideoClassifier(model, backend="onnxruntime", quantize="none" | "int8")   # or --backend / --quantize

``OnnxRuntimeEngine`` is an ``Engine`` whose ``forward_views`` runs an ONNX Runtime session instead of the
PyTorch model; everything around it (input stage, batching, views per pass, workers, outputs) is the engine's.
The backend is chosen once, when the classifier is built (``make_engine``), never inside a forward pass.

The ONNX file (``export.export_onnx``: outputs ``logits`` and the pre-head ``features``, dynamic batch) is
exported once per model and kept in the cache folder, ``<cache>/onnx/`` (``weights.download.cache_dir``:
``$UNIFORMERV2_HOME``, default ``~/.cache/uniformerv2``), named after a digest of its key: the weights (a
sha256 of every tensor of the state dict), the model config (frames, size, ...), the batch dimension (dynamic),
the opset and the quantization. Beside it, ``<file>.onnx.json`` holds that key and the sha256 and size of the
``.onnx``; a file whose note is missing, does not parse, names another key or another digest (a corrupt,
truncated or half-written file) is exported again. Both are written atomically (``fileio.atomic_write``), the
note last, under a lock, so concurrent processes (torchrun ranks) export once and never read a partial file.

int8 (``quantize="int8"``): ONNX Runtime's dynamic quantization (``quantize_dynamic``) of the weights of the
MatMul / Gemm nodes whose second input is a constant (the linear layers: projections, MLPs), int8 weights and
per-tensor scales, activations quantized on the fly; the attention products, convolutions (patch embedding,
DPE), layer norms, softmaxes and the classification head stay fp32. It is built from the cached fp32 file and
cached in the same way.

Threads: the session's intra-op threads are the torch threads of the moment (``torch.get_num_threads()``),
which the engine sets to the cores that input workers leave (``pipeline.model_threads``); one session is kept
per thread count, and its threads do not spin while workers need the cores.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .engine import Engine
from .views import normalize_views

BACKENDS = ("torch", "onnxruntime")
QUANTIZE = ("none", "int8")
INSTALL_HINT = "pip install 'uniformerv2[onnx]'"
FORMAT = 1          # bump when the export changes in a way that invalidates cached files
OPSET = 18
HASH_CHUNK = 1 << 22

exports = 0         # how many ONNX files this process has built (fp32 exports and int8 quantizations)


def require_onnxruntime() -> None:
    """Raise a one-line ``UserError`` naming what to install when ONNX Runtime or the exporter is missing.
    Looks the packages up without importing them (``onnx`` and ``onnxscript`` take seconds to import and are
    needed only to export)."""
    import importlib.util

    missing = []
    for name in ("onnxruntime", "onnx", "onnxscript"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise UserError(f"the onnxruntime backend needs {', '.join(missing)} (not installed): {INSTALL_HINT}")


def check_choice(backend: str, quantize: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if quantize not in QUANTIZE:
        raise UserError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if quantize != "none" and backend == "torch":
        raise UserError(f"quantize={quantize} needs the onnxruntime backend (--backend onnxruntime)")


def check_placement(backend: str, device, dtype) -> None:
    """The onnxruntime backend runs on the CPU in fp32: anything else is a ``UserError`` (before any work)."""
    if backend == "torch":
        return
    if torch.device(device).type != "cpu":
        raise UserError(f"the {backend} backend runs on the CPU, not {device} (use --device cpu)")
    if dtype != torch.float32:
        raise UserError(f"the {backend} backend computes in fp32 (int8 with --quantize int8), not {dtype}")


def make_engine(model, device, dtype, data, memory_cap, backend: str = "torch", quantize: str = "none",
                cache: str | os.PathLike | None = None) -> Engine:
    """The engine of ``backend``: ``Engine`` (the PyTorch model) or ``OnnxRuntimeEngine``."""
    check_choice(backend, quantize)
    if backend == "torch":
        return Engine(model, device, dtype, data, memory_cap)
    return OnnxRuntimeEngine(model, device, dtype, data, memory_cap, quantize=quantize, cache=cache)


# ----------------------------------------------------------------------------------------------- the cache
def weights_digest(model) -> str:
    """sha256 over the state dict: every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def export_key(model, quantize: str, digest: str | None = None) -> dict:
    """What decides the exported file: weights, config (frames, size, ...), batch dimension, opset, quantization."""
    key = {"format": FORMAT, "weights": digest or weights_digest(model), "config": model.cfg.to_dict(),
           "frames": int(model.num_frames), "size": int(model.img_size), "batch": "dynamic", "opset": OPSET,
           "quantize": quantize}
    return json.loads(json.dumps(key, sort_keys=True))   # as it reads back from the note (lists, not tuples)


def cache_folder(cache=None) -> Path:
    if cache is not None:
        return Path(cache)
    from ..weights.download import cache_dir

    return cache_dir() / "onnx"


def cached_path(key: dict, cache=None, name: str | None = None) -> Path:
    tag = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in (name or "model"))
    return cache_folder(cache) / f"{stem}-{key['quantize']}-{tag}.onnx"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _note(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def is_valid(path: Path, key: dict) -> bool:
    """Whether ``path`` is a complete export of ``key``: its note names the key and the file's size and sha256."""
    try:
        note = json.loads(_note(path).read_text())
        if note.get("key") != key or path.stat().st_size != note.get("size"):
            return False
        return file_sha256(path) == note.get("sha256")
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``.<name>.lock`` beside ``path`` (no-op where ``fcntl`` is missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:   # not POSIX
        yield
        return
    with open(path.with_name(f".{path.name}.lock"), "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _cached(path: Path, key: dict, build) -> Path:
    """``path`` when it is a valid export of ``key``; else ``build(path)`` writes it, and its note is written."""
    global exports
    from ..fileio import atomic_write_json

    if is_valid(path, key):
        return path
    with _locked(path):
        if is_valid(path, key):   # another process built it while this one waited
            return path
        _note(path).unlink(missing_ok=True)
        build(path)
        exports += 1
        atomic_write_json(_note(path), {"key": key, "file": path.name, "size": path.stat().st_size,
                                        "sha256": file_sha256(path)})
    return path


def onnx_file(model, quantize: str = "none", cache=None) -> Path:
    """The cached ONNX file of ``model`` (fp32, or int8 built from the fp32 one), exported when missing or
    invalid."""
    require_onnxruntime()
    if quantize not in QUANTIZE:
        raise UserError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    digest = weights_digest(model)
    name = getattr(model, "preset", None) or "model"
    key = export_key(model, "none", digest)
    if quantize != "none":   # a valid int8 file needs nothing of the fp32 one
        qkey = export_key(model, quantize, digest)
        qpath = cached_path(qkey, cache, name)
        if is_valid(qpath, qkey):
            return qpath
    fp32 = _cached(cached_path(key, cache, name), key, lambda p: _export(model, p))
    if quantize == "none":
        return fp32
    return _cached(qpath, qkey, lambda p: quantize_int8(fp32, p))


def _export(model, path: Path) -> None:
    from .export import export_onnx

    report = export_onnx(model, path, opset=OPSET, check=True)
    if not report.ok:
        raise UserError(f"the ONNX export of the model does not match PyTorch: {report.summary()}")


def head_nodes(graph) -> set[str]:
    """Names of the nodes from the last MatMul / Gemm before the ``logits`` output to that output: the
    classification head's linear layer (kept fp32)."""
    producer = {out: node for node in graph.node for out in node.output}
    found: set[str] = set()
    todo = [o.name for o in graph.output if o.name == "logits"]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in found:
            continue
        found.add(node.name)
        if node.op_type in ("MatMul", "Gemm"):
            continue
        todo.extend(i for i in node.input if i in producer)
    return found


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of ``src``'s linear layers into ``dst`` (see the module doc)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ..fileio import atomic_write

    keep = head_nodes(onnx.load(str(src), load_external_data=False).graph)

    def write(tmp):
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)   # the quantizer's advice ("consider pre-processing") is not for the user
        try:
            quantize_dynamic(str(src), tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                             nodes_to_exclude=sorted(keep), per_channel=False, reduce_range=False,
                             extra_options={"MatMulConstBOnly": True})
        finally:
            root.setLevel(level)

    atomic_write(dst, write)


# ----------------------------------------------------------------------------------------------- the engine
class OnnxRuntimeEngine(Engine):
    """An ``Engine`` whose forward pass is an ONNX Runtime session on the CPU over the cached ONNX file of its
    model (fp32 or int8). ``model`` stays for what the engine reads of it (config, frames, cost estimates)."""

    def __init__(self, model, device, dtype, data, memory_cap: int | None = None, *, quantize: str = "none",
                 cache=None):
        require_onnxruntime()
        check_placement("onnxruntime", device, dtype)
        super().__init__(model, torch.device("cpu"), torch.float32, data, memory_cap)
        self.quantize = quantize
        self.path = onnx_file(model, quantize, cache)
        self._sessions: dict[int, object] = {}

    def session(self, threads: int | None = None):
        """The ONNX Runtime session with ``threads`` intra-op threads (default: the torch threads of the
        moment, which the engine caps at the cores that input workers leave), built once per count."""
        import onnxruntime as ort

        from .pipeline import usable_cores

        n = max(1, int(threads or torch.get_num_threads()))
        sess = self._sessions.get(n)
        if sess is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            if n < usable_cores():   # input workers hold the other cores: idle threads must not spin on them
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            except Exception as e:   # noqa: BLE001 - ONNX Runtime raises its own exception types
                raise UserError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0]}") from None
            self._sessions[n] = sess
        return sess

    @torch.inference_mode()
    def forward_views(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 views (B, 3, T, S, S) -> float32 numpy (features (B, C), logits (B, K), probabilities (B, K)):
        normalised as the torch backend does, one run of the session, softmax in torch."""
        x = normalize_views(batch.cpu(), self.data.mean, self.data.std).contiguous().numpy()
        logits, feats = self.session().run(["logits", "features"], {"video": x})
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
        return np.ascontiguousarray(feats, dtype=np.float32), logits, probs
