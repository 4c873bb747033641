"""Keras 2 HDF5 weight files in the layout of the TensorFlow port of UniFormerV2, written with h5py from an
official-layout state dict.

The layout is the one of the files the port's own Keras code writes (``../shared/fixtures/keras/``, whose
README describes it); ``test_weights_keras.py`` checks that this writer reproduces those files dataset by
dataset.  It is written from that description, independently of ``uniformerv2.weights.keras``.

Names imitate Keras's (``dense_N/kernel:0`` with process-wide counters); ``first`` shifts every counter,
as a second model built in the same process would, to show a reader does not depend on them.
"""
from __future__ import annotations

import collections

import numpy as np


class _Names:
    def __init__(self, first: int):
        self.count = collections.Counter()
        self.first = first

    def __call__(self, kind: str) -> str:
        n = self.count[kind] + self.first
        self.count[kind] += 1
        return kind if n == 0 else f"{kind}_{n}"


def _np(t) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def keras_layout(official_sd: dict, first: int = 0) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """[(layer group, [(weight name, array) in load order])] of the port's model holding these weights."""
    sd = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in official_sd.items()}
    name = _Names(first)
    conv = lambda t: _np(t).transpose(2, 3, 4, 1, 0)  # official (out, in, kt, kh, kw) -> (kt, kh, kw, in, out)
    dense = lambda t: _np(t).T

    depth = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    n_dec = len({k.split(".")[2] for k in sd if k.startswith("transformer.dec.")})
    trainable, stats = [], []

    def norm(prefix, key, kind="layer_normalization"):
        layer = f"{prefix}{name(kind)}"
        trainable.extend([(f"{layer}/gamma:0", _np(sd[f"{key}.weight"])), (f"{layer}/beta:0", _np(sd[f"{key}.bias"]))])
        return layer

    def dense_layer(prefix, w, b):
        layer = f"{prefix}{name('dense')}"
        trainable.extend([(f"{layer}/kernel:0", dense(w)), (f"{layer}/bias:0", _np(b))])

    def attention_mlp(block, key, norms_after):
        mha = f"TFTransformer/{block}/{name('tf_multihead_attention')}/"
        w, b = sd[f"{key}.attn.in_proj_weight"], sd[f"{key}.attn.in_proj_bias"]
        c = w.shape[1]
        for i in range(3):  # q, k, v
            dense_layer(mha, w[i * c:(i + 1) * c], b[i * c:(i + 1) * c])
        dense_layer(mha, sd[f"{key}.attn.out_proj.weight"], sd[f"{key}.attn.out_proj.bias"])
        norm(f"TFTransformer/{block}/", f"{key}.ln_1")
        dense_layer("", sd[f"{key}.mlp.c_fc.weight"], sd[f"{key}.mlp.c_fc.bias"])  # inside a Sequential: no prefix
        dense_layer("", sd[f"{key}.mlp.c_proj.weight"], sd[f"{key}.mlp.c_proj.bias"])
        for n in norms_after:
            norm(f"TFTransformer/{block}/", f"{key}.{n}")

    for i in range(depth):
        key = f"transformer.resblocks.{i}"
        for m in ("lmhra1", "lmhra2"):
            p = f"{key}.{m}.pos_embed"
            if f"{p}.0.weight" not in sd:
                continue
            bn = norm("", f"{p}.0", "batch_normalization")
            stats.extend([(f"{bn}/moving_mean:0", _np(sd[f"{p}.0.running_mean"])),
                          (f"{bn}/moving_variance:0", _np(sd[f"{p}.0.running_var"]))])
            for j in (1, 2, 3):
                layer = name("conv3d")
                trainable.extend([(f"{layer}/kernel:0", conv(sd[f"{p}.{j}.weight"])),
                                  (f"{layer}/bias:0", _np(sd[f"{p}.{j}.bias"]))])
        attention_mlp(f"TFResidualAttentionBlock{i + 1}", key, ["ln_2"])
    for j in range(n_dec):
        layer = f"TFTransformer/{name('conv3d')}"
        trainable.extend([(f"{layer}/kernel:0", conv(sd[f"transformer.dpe.{j}.weight"])),
                          (f"{layer}/bias:0", _np(sd[f"transformer.dpe.{j}.bias"]))])
    for j in range(n_dec):
        attention_mlp(f"TFExtractor{j + 1}", f"transformer.dec.{j}", ["ln_2", "ln_3"])
    norm("", "transformer.proj.0")
    dense_layer("", sd["transformer.proj.2.weight"], sd["transformer.proj.2.bias"])
    trainable.append(("temporal_cls_token:0", _np(sd["transformer.temporal_cls_token"]).reshape(1, 1, -1)))
    if "transformer.balance" in sd:
        trainable.append(("balance:0", _np(sd["transformer.balance"])))
    return [("conv1", [("conv1/kernel:0", conv(sd["conv1.weight"]))]),
            ("ln_pre", [("ln_pre/gamma:0", _np(sd["ln_pre.weight"])), ("ln_pre/beta:0", _np(sd["ln_pre.bias"]))]),
            ("TFTransformer", trainable + stats),
            ("top_level_model_weights", [("class_embedding:0", _np(sd["class_embedding"])),
                                         ("positional_embedding:0", _np(sd["positional_embedding"]))])]


def _set_names(node, attr: str, names: list[str], as_bytes: bool, split: int | None):
    """A name list as Keras stores it: fixed-length byte strings (``as_bytes``, Keras 2's own way) or
    variable-length strings, in one attribute or split into ``attr0``, ``attr1``..."""
    import h5py

    chunks = [(attr, names)] if split is None else \
        [(f"{attr}{i // split}", names[i:i + split]) for i in range(0, len(names), split)]
    for key, chunk in chunks:
        if as_bytes:
            node.attrs[key] = np.array([n.encode() for n in chunk])
        else:
            node.attrs.create(key, chunk, dtype=h5py.string_dtype())


def write_keras_h5(path, official_sd: dict, *, first: int = 0, as_bytes: bool = False, split: int | None = None,
                   layout=None):
    """Write the port's ``.h5`` of ``official_sd`` (``layout``: a :func:`keras_layout` to write instead)."""
    import h5py

    groups = layout if layout is not None else keras_layout(official_sd, first)
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.12.0"
        _set_names(f, "layer_names", [g for g, _ in groups if g != "top_level_model_weights"], as_bytes, None)
        for group, weights in groups:
            g = f.create_group(group)
            _set_names(g, "weight_names", [n for n, _ in weights], as_bytes, split)
            for n, a in weights:
                g.create_dataset(n, data=a)
    return path
