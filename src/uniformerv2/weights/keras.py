"""Keras HDF5 weight files of the TensorFlow port of UniFormerV2 (``TFUniFormerV2_<NAME>.h5``) → the official
layout, read with ``h5py`` alone (no TensorFlow).

Keras 2 ``save_weights(... .h5)`` writes one group per layer of the model, listed in load order by the root
attribute ``layer_names``; inside a group, the attribute ``weight_names`` lists its datasets in load order (a
``/`` in a name is a nested subgroup).  Variables a subclassed model owns itself sit in the group
``top_level_model_weights``, loaded last.  Keras loads by position, and the numeric suffixes of the names
(``dense_17``…) come from process-wide counters, so this reader maps **by position, with a shape check at
every step**, and never reads a name.

Order of the port's model (width C, C' = int(C // 1.5), hidden H = 4C; verified against files written by the
port's own code, whose logits match the official model's):

  conv1            kernel (kt, p, p, 3, C)
  ln_pre           gamma, beta
  TFTransformer    per backbone block: [local MHRA ×0, 1 or 2: BN gamma, beta; 1×1×1 conv C→C' kernel, bias;
                     depthwise (3,1,1) conv kernel (3,1,1,1,C'), bias; 1×1×1 conv C'→C kernel, bias]
                     q, k, v, out Dense (C, C) + bias; ln_1; mlp c_fc (C, H) + bias; c_proj (H, C) + bias; ln_2
                   dpe j: kernel (3,3,3,1,C), bias
                   dec j: q, k, v, out; ln_1; c_fc; c_proj; ln_2; ln_3
                   head LayerNorm (proj.0); head Dense (C, classes) (proj.2)
                   temporal_cls_token (1,1,C); balance (C) unless frozen
                   BN moving_mean, moving_variance of every local MHRA, in block order (non-trainable: last)
  top level        class_embedding (C), positional_embedding (tokens, C)

Tensor transforms: a Dense kernel is the Linear weight transposed; a Conv3D kernel (kt, kh, kw, in/groups,
out) is the official weight permuted (2, 3, 4, 1, 0); q/k/v are the rows of ``in_proj``.  The file stores no
BatchNorm epsilon: the official 1e-5 is what the model uses (the port's Keras layers use Keras's 1e-3).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
INSTALL_HINT = "reading Keras .h5 weights needs h5py: pip install 'uniformerv2[keras]' (or pip install h5py)"


def is_hdf5(path) -> bool:
    """Whether ``path`` is an HDF5 file (signature at offset 0; user blocks are not used by Keras)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_MAGIC
    except OSError:
        return False


def _h5py():
    try:
        import h5py
    except ImportError:
        raise CheckpointError(INSTALL_HINT) from None
    return h5py


def _names(node, attr: str) -> list[str]:
    """A Keras name-list attribute: variable-length or fixed strings, str or bytes, possibly split into
    ``attr0``, ``attr1``… (Keras does so above 64 KB)."""
    if attr in node.attrs:
        raw = list(node.attrs[attr])
    else:
        raw, i = [], 0
        while f"{attr}{i}" in node.attrs:
            raw += list(node.attrs[f"{attr}{i}"])
            i += 1
        if i == 0:
            return []
    return [n.decode("utf-8") if isinstance(n, (bytes, np.bytes_)) else str(n) for n in raw]


def read_keras_weights(path) -> list[tuple[str, np.ndarray]]:
    """Every weight of a Keras 2 HDF5 file (``save_weights``, or ``save`` with its ``model_weights``), as
    (name, array) in Keras's load order."""
    h5py = _h5py()
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            layers = _names(root, "layer_names")
            if not layers:
                raise CheckpointError(f"{path} is an HDF5 file but not Keras weights (no layer_names attribute)")
            if "top_level_model_weights" in root and "top_level_model_weights" not in layers:
                layers.append("top_level_model_weights")
            out = []
            for layer in layers:
                if layer not in root:
                    raise CheckpointError(f"{path}: Keras layer {layer!r} is listed but has no group")
                group = root[layer]
                for name in _names(group, "weight_names"):
                    if name not in group:
                        raise CheckpointError(f"{path}: Keras weight {layer}/{name} is listed but missing")
                    out.append((f"{layer}/{name}", np.asarray(group[name][()], dtype=np.float32)))
    except OSError as e:
        raise CheckpointError(f"{path} is damaged or truncated (an HDF5 file h5py cannot read: "
                              f"{' '.join(str(e).split())[:160]}); download it again") from None
    if not out:
        raise CheckpointError(f"{path} is a Keras file without weights")
    return out


class _Cursor:
    """Walks the weights in load order; every step checks the shape it expects."""

    def __init__(self, items, path):
        self.items, self.path, self.i = items, path, 0

    def peek(self) -> tuple | None:
        return self.items[self.i][1].shape if self.i < len(self.items) else None

    @property
    def left(self) -> int:
        return len(self.items) - self.i

    def take(self, what: str, shape) -> np.ndarray:
        """The next weight, which must have ``shape`` (None in it: any size on that axis)."""
        if self.i >= len(self.items):
            raise CheckpointError(f"{self.path}: the Keras weights end where {what} {_fmt(shape)} should follow "
                                  "(is this a UniFormerV2 file?)")
        name, a = self.items[self.i]
        if len(a.shape) != len(shape) or any(w is not None and w != s for w, s in zip(shape, a.shape)):
            raise CheckpointError(f"{self.path}: Keras weight #{self.i} ({name}) has shape {list(a.shape)} where "
                                  f"{what} {_fmt(shape)} should be (not a UniFormerV2 file of the port's layout?)")
        self.i += 1
        return a


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _dense(cur, what, n_in, n_out):
    """(official weight (out, in), bias) of a Dense layer."""
    k = cur.take(f"{what} kernel", (n_in, n_out))
    return _t(k.T), _t(cur.take(f"{what} bias", (k.shape[1],)))


def _conv(cur, what, shape5):
    k = cur.take(f"{what} kernel", shape5)
    return _t(k.transpose(4, 3, 0, 1, 2))


def _norm(cur, what, c):
    return _t(cur.take(f"{what} gamma", (c,))), _t(cur.take(f"{what} beta", (c,)))


def _attention_mlp(cur, sd, prefix, c, norms):
    """q, k, v, out Dense, then the norms and MLP in the port's order (``norms``: before and after the MLP)."""
    q, k, v = (_dense(cur, f"{prefix} attention {p}", c, c) for p in "qkv")
    sd[f"{prefix}.attn.in_proj_weight"] = torch.cat([q[0], k[0], v[0]], 0)
    sd[f"{prefix}.attn.in_proj_bias"] = torch.cat([q[1], k[1], v[1]], 0)
    out = _dense(cur, f"{prefix} attention out", c, c)
    sd[f"{prefix}.attn.out_proj.weight"], sd[f"{prefix}.attn.out_proj.bias"] = out
    before, after = norms
    for n in before:
        sd[f"{prefix}.{n}.weight"], sd[f"{prefix}.{n}.bias"] = _norm(cur, f"{prefix} {n}", c)
    fc = _dense(cur, f"{prefix} mlp c_fc", c, None)
    sd[f"{prefix}.mlp.c_fc.weight"], sd[f"{prefix}.mlp.c_fc.bias"] = fc
    proj = _dense(cur, f"{prefix} mlp c_proj", fc[0].shape[0], c)
    sd[f"{prefix}.mlp.c_proj.weight"], sd[f"{prefix}.mlp.c_proj.bias"] = proj
    for n in after:
        sd[f"{prefix}.{n}.weight"], sd[f"{prefix}.{n}.bias"] = _norm(cur, f"{prefix} {n}", c)


def _is_dpe(shape, c) -> bool:
    """A DPE kernel: depthwise (k, k, k, 1, C)."""
    return shape is not None and len(shape) == 5 and shape[3:] == (1, c) and shape[0] == shape[1] == shape[2]


def keras_to_official(items: list[tuple[str, np.ndarray]], path="the file") -> dict[str, torch.Tensor]:
    """The official state dict (names without ``backbone.``) of the port's weights in load order."""
    cur = _Cursor(items, path)
    sd: dict[str, torch.Tensor] = {}
    first = cur.peek()
    if first is None or len(first) != 5 or first[3] != 3:
        raise CheckpointError(f"{path}: the first Keras weight has shape {list(first or ())}, not a patch-embedding "
                              "Conv3D kernel (kt, p, p, 3, C): not a UniFormerV2 file of the port's layout")
    c = first[4]
    sd["conv1.weight"] = _conv(cur, "conv1", (None, None, None, 3, c))
    sd["ln_pre.weight"], sd["ln_pre.bias"] = _norm(cur, "ln_pre", c)
    lmhra: list[str] = []  # the local MHRA modules of every block, in block order (their BN statistics come last)
    layers = 0
    while cur.peek() is not None and not _is_dpe(cur.peek(), c):
        prefix = f"transformer.resblocks.{layers}"
        m = 0
        while cur.peek() == (c,):  # a local MHRA starts with its BatchNorm; an attention block with a (C, C) kernel
            m += 1
            if m > 2:
                raise CheckpointError(f"{path}: block {layers} has more than two local MHRA (a BatchNorm where the "
                                      "attention should start)")
            name = f"{prefix}.lmhra{m}.pos_embed"
            sd[f"{name}.0.weight"], sd[f"{name}.0.bias"] = _norm(cur, f"{name} BatchNorm", c)
            down = cur.take(f"{name} 1x1x1 conv kernel", (1, 1, 1, c, None))
            r = down.shape[4]
            sd[f"{name}.1.weight"] = _t(down.transpose(4, 3, 0, 1, 2))
            sd[f"{name}.1.bias"] = _t(cur.take(f"{name} 1x1x1 conv bias", (r,)))
            sd[f"{name}.2.weight"] = _conv(cur, f"{name} depthwise conv", (None, 1, 1, 1, r))
            sd[f"{name}.2.bias"] = _t(cur.take(f"{name} depthwise conv bias", (r,)))
            sd[f"{name}.3.weight"] = _conv(cur, f"{name} 1x1x1 conv", (1, 1, 1, r, c))
            sd[f"{name}.3.bias"] = _t(cur.take(f"{name} 1x1x1 conv bias", (c,)))
            lmhra.append(name)
        if layers and m != sum(1 for n in lmhra if n.startswith("transformer.resblocks.0.")):
            raise CheckpointError(f"{path}: block {layers} has {m} local MHRA, block 0 another number")
        _attention_mlp(cur, sd, prefix, c, (["ln_1"], ["ln_2"]))
        layers += 1
    if layers == 0 or cur.peek() is None:
        raise CheckpointError(f"{path}: no backbone blocks followed by global blocks (not a UniFormerV2 file?)")
    n_global = 0
    while _is_dpe(cur.peek(), c):
        k = cur.peek()[0]
        sd[f"transformer.dpe.{n_global}.weight"] = _conv(cur, f"dpe {n_global}", (k, k, k, 1, c))
        sd[f"transformer.dpe.{n_global}.bias"] = _t(cur.take(f"dpe {n_global} bias", (c,)))
        n_global += 1
    for j in range(n_global):
        _attention_mlp(cur, sd, f"transformer.dec.{j}", c, (["ln_1"], ["ln_2", "ln_3"]))
    sd["transformer.proj.0.weight"], sd["transformer.proj.0.bias"] = _norm(cur, "head LayerNorm", c)
    sd["transformer.proj.2.weight"], sd["transformer.proj.2.bias"] = _dense(cur, "head", c, None)
    sd["transformer.temporal_cls_token"] = _t(cur.take("temporal_cls_token", (1, 1, c)))
    rest = cur.left - 2 - 2 * len(lmhra)  # class_embedding and positional_embedding at the end
    if rest not in (0, 1):
        raise CheckpointError(f"{path}: {cur.left} Keras weights after temporal_cls_token, where the balance, "
                              f"{2 * len(lmhra)} BatchNorm statistics and the two embeddings should be")
    if rest == 1:
        sd["transformer.balance"] = _t(cur.take("balance", (c,)))
    for name in lmhra:
        sd[f"{name}.0.running_mean"] = _t(cur.take(f"{name} BatchNorm moving_mean", (c,)))
        sd[f"{name}.0.running_var"] = _t(cur.take(f"{name} BatchNorm moving_variance", (c,)))
        sd[f"{name}.0.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    sd["class_embedding"] = _t(cur.take("class_embedding", (c,)))
    sd["positional_embedding"] = _t(cur.take("positional_embedding", (None, c)))
    assert cur.left == 0
    return sd


def load_keras_h5(path) -> dict[str, torch.Tensor]:
    """The official-layout state dict of a Keras ``.h5`` file of the port."""
    return keras_to_official(read_keras_weights(path), path)
