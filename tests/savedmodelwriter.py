"""Zipped TensorFlow SavedModels in the layout of the TensorFlow port of UniFormerV2 (``TFUniFormerV2_<NAME>.zip``),
written without TensorFlow from an official-layout state dict.

Only what a reader of the variables needs is written: ``variables/variables.index`` (a table file of
``BundleEntryProto`` values, with the ``BundleHeaderProto`` under the empty key) and
``variables/variables.data-00000-of-00001`` (the raw little-endian tensors, in key order), plus a minimal
``saved_model.pb``.  The object graph mirrors the one TensorFlow 2.12 writes for the port's model
(``tests/data/tf_savedmodel_tiny_ssv2.zip``, which ``test_weights_savedmodel.py`` compares it with):

* the root's children ``variables``, ``trainable_variables``, ``regularization_losses``, ``keras_api``, then the
  model's attributes ``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer``;
* each layer has its own ``variables`` and ``trainable_variables`` lists and a ``keras_api`` child; the
  transformer's ``variables`` list puts the BatchNorm statistics after the backbone blocks' trainable
  variables, before the global blocks' (its ``trainable_variables`` list is in ``.h5`` order);
* the root's ``variables`` list is the layers' lists one after the other, then ``class_embedding`` and
  ``positional_embedding``; a variable's checkpoint key is ``variables/<its place in that list>`` except for
  those two, which the root holds directly (``class_embedding/.ATTRIBUTES/VARIABLE_VALUE``).

Written from the format's description in TensorFlow's sources, independently of
``uniformerv2.weights.savedmodel``.
"""
from __future__ import annotations

import struct
import zipfile

import numpy as np

from keraswriter import keras_layout

MAGIC = 0xDB4775248B80FB57
SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def _crc_table():
    poly, table = 0x82F63B78, []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ (poly if n & 1 else 0)
        table.append(n)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    crc = ~crc & 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return ~crc & 0xFFFFFFFF


def masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value) -> bytes:
    """One protobuf field: an int as a varint, bytes or str length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def fixed32(number: int, value: int) -> bytes:
    return varint(number << 3 | 5) + struct.pack("<I", value)


# ----------------------------------------------------------------------------- the table file
def _block(entries: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        last = key
    if not restarts:
        restarts = [0]
    return bytes(out) + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))


def table_file(items: dict[bytes, bytes], block_size: int = 262144) -> bytes:
    """A table file of ``items`` (sorted by key): data blocks of about ``block_size`` bytes, an empty metaindex
    block, an index block and the footer; no compression, each block with its type byte and masked crc32c."""
    out = bytearray()

    def put(block: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(block))
        out.extend(block + b"\x00" + struct.pack("<I", masked(crc32c(block + b"\x00"))))
        return handle

    index, pending, size = [], [], 0
    keys = sorted(items)
    for i, key in enumerate(keys):
        pending.append((key, items[key]))
        size += len(key) + len(items[key]) + 3
        if size >= block_size or i == len(keys) - 1:
            index.append((key, put(_block(pending, 16))))  # the block's last key separates it from the next
            pending, size = [], 0
    meta = put(_block([], 1))
    idx = put(_block(index, 1))
    footer = meta + idx
    out += footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", MAGIC)
    return bytes(out)


# ----------------------------------------------------------------------------- the tensor bundle
def _entry(dtype: int, shape, offset: int, size: int, crc: int) -> bytes:
    dims = b"".join(field(2, field(1, int(d))) for d in shape)
    return (field(1, dtype) + field(2, dims) + (field(4, offset) if offset else b"") + field(5, size)
            + fixed32(6, masked(crc)))


def bundle(tensors: dict[str, np.ndarray], graph: bytes, block_size: int = 262144,
           crc_limit: int | None = None) -> tuple[bytes, bytes]:
    """(index file, data file) of float32 ``tensors`` and the object graph: the data file holds the tensors in
    the order of ``tensors``, then the object graph (TensorFlow's order: the graph's breadth-first order).
    ``crc_limit``: tensors larger than this many bytes get a zero checksum (pure-Python crc32c takes minutes
    over a B/16; the reader checks only the tensors up to its own limit)."""
    values = dict(tensors)
    values["_CHECKPOINTABLE_OBJECT_GRAPH"] = graph
    index = {b"": field(1, 1) + field(3, field(1, 1))}  # num_shards 1, little-endian (0: omitted), version 1
    data = bytearray()
    for key in values:
        v = values[key]
        if isinstance(v, bytes):  # a string scalar: its length, the masked crc32c of the length, the bytes
            lengths = varint(len(v))
            length_crc = crc32c(struct.pack("<I", len(v)))
            raw = lengths + struct.pack("<I", masked(length_crc)) + v
            crc = crc32c(v, crc32c(struct.pack("<I", masked(length_crc)), length_crc))
            index[key.encode()] = _entry(7, (), len(data), len(raw), crc)
        else:
            raw = np.ascontiguousarray(v, dtype="<f4").tobytes()
            crc = crc32c(raw) if crc_limit is None or len(raw) <= crc_limit else 0
            index[key.encode()] = _entry(1, v.shape, len(data), len(raw), crc)
        data += raw
    return table_file(index, block_size), bytes(data)


# ----------------------------------------------------------------------------- the object graph
class _Graph:
    def __init__(self):
        self.nodes: list[dict] = []

    def node(self, children=(), key=None, full_name="") -> int:
        self.nodes.append({"children": list(children), "key": key, "full_name": full_name})
        return len(self.nodes) - 1

    def listing(self, ids) -> int:
        return self.node([(str(i), n) for i, n in enumerate(ids)])

    def serialize(self) -> bytes:
        out = b""
        for n in self.nodes:
            body = b"".join(field(1, field(1, nid) + field(2, name)) for name, nid in n["children"])
            if n["key"] is not None:
                body += field(2, field(1, "VARIABLE_VALUE") + field(2, n["full_name"]) + field(3, n["key"]))
            out += field(1, body)
        return out


def savedmodel_variables(official_sd: dict) -> tuple[dict[str, np.ndarray], bytes, list[str]]:
    """(tensors by checkpoint key, object graph, the keys in ``.h5`` order) of the port's model holding
    ``official_sd``."""
    groups = dict(keras_layout(official_sd))
    stats = [w for w in groups["TFTransformer"] if w[0].endswith(("moving_mean:0", "moving_variance:0"))]
    trainable = [w for w in groups["TFTransformer"] if w not in stats]
    first_global = next(i for i, (n, _) in enumerate(trainable) if n.startswith("TFTransformer/conv3d"))
    layers = {"conv1": (groups["conv1"], groups["conv1"]),
              "ln_pre": (groups["ln_pre"], groups["ln_pre"]),
              "transformer": (trainable, trainable[:first_global] + stats + trainable[first_global:])}
    own = [("class_embedding", groups["top_level_model_weights"][0][1]),
           ("positional_embedding", groups["top_level_model_weights"][1][1])]
    h5_order = [n for n, _ in groups["conv1"] + groups["ln_pre"] + groups["TFTransformer"]]
    h5_order += [n for n, _ in own]

    g = _Graph()
    root = g.node()  # children filled in below
    ids: dict[str, int] = {}  # weight name -> variable node
    everything: list[tuple[str, np.ndarray]] = []
    for train, variables in layers.values():
        everything += variables
    everything += own
    tensors, own_names = {}, {n for n, _ in own}
    for i, (name, a) in enumerate(everything):
        key = f"{name}{SUFFIX}" if name in own_names else f"variables/{i}{SUFFIX}"
        ids[name] = g.node(key=key, full_name=name.removesuffix(":0"))
        tensors[key] = a
    layer_nodes = {}
    for attr, (train, variables) in layers.items():
        attrs = [(n.rsplit("/", 1)[1].removesuffix(":0"), ids[n]) for n, _ in variables] if attr != "transformer" else []
        layer_nodes[attr] = g.node([("variables", g.listing([ids[n] for n, _ in variables])),
                                    ("trainable_variables", g.listing([ids[n] for n, _ in train])),
                                    ("regularization_losses", g.listing([])), ("keras_api", g.node())] + attrs)
    all_ids = [ids[n] for n, _ in everything]
    trainable_ids = [ids[n] for n in h5_order if not n.endswith(("moving_mean:0", "moving_variance:0"))]
    api = g.node([("non_trainable_variables", g.listing([i for i in all_ids if i not in trainable_ids])),
                  ("layers", g.listing(list(layer_nodes.values()))), ("variables", g.listing(all_ids)),
                  ("trainable_variables", g.listing(trainable_ids))])
    g.nodes[root]["children"] = [
        ("variables", g.listing(all_ids)), ("trainable_variables", g.listing(trainable_ids)),
        ("regularization_losses", g.listing([])), ("keras_api", api), ("__call__", g.node()),
        ("conv1", layer_nodes["conv1"]), ("class_embedding", ids["class_embedding"]),
        ("positional_embedding", ids["positional_embedding"]), ("ln_pre", layer_nodes["ln_pre"]),
        ("transformer", layer_nodes["transformer"]), ("signatures", g.node())]
    keys_in_h5_order = [g.nodes[ids[n]]["key"] for n in h5_order]
    first = [f"{n}{SUFFIX}" for n in own_names]  # the root's own variables come first in breadth-first order
    tensors = {k: tensors[k] for k in sorted(first) + [k for k in tensors if k not in first]}
    return tensors, g.serialize(), keys_in_h5_order


def write_savedmodel_zip(path, official_sd: dict, *, folder: str = "TFUniFormerV2_TEST", block_size: int = 262144,
                         crc_limit: int | None = None, compression: int = zipfile.ZIP_DEFLATED):
    """Write the port's zipped SavedModel (its variables) of ``official_sd``; returns ``path``."""
    tensors, graph, _ = savedmodel_variables(official_sd)
    index, data = bundle(tensors, graph, block_size, crc_limit)
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr(f"{folder}/saved_model.pb", field(1, 1))  # saved_model_schema_version 1 (the graph left out)
        z.writestr(f"{folder}/variables/variables.index", index)
        z.writestr(f"{folder}/variables/variables.data-00000-of-00001", data)
    return path
