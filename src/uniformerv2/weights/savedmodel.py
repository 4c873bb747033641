"""The variables of a zipped TensorFlow SavedModel of the TensorFlow port of UniFormerV2
(``TFUniFormerV2_<NAME>.zip``), read without TensorFlow, and handed to the Keras reader by position.

A SavedModel keeps its variables in a *tensor bundle*: ``variables/variables.index`` and the data files
``variables/variables.data-<shard>-of-<shards>``.  The pieces, as TensorFlow's sources define them
(``core/util/tensor_bundle/tensor_bundle.{proto,cc}``, the table format of ``lib/io``):

* The index is a sorted string table.  Its last 48 bytes are a footer: two block handles (metaindex,
  index; each a pair of varint64 offset and size), zero padding to 40 bytes, and the little-endian magic
  ``0xdb4775248b80fb57``.  Each block is followed by a 5-byte trailer: a compression byte (0: none; the
  bundle writer never compresses) and the masked crc32c of the block and that byte.  A block holds entries
  ``varint32 shared, varint32 non_shared, varint32 value_length, key suffix, value`` (each key shares
  ``shared`` leading bytes with the one before), then the restart offsets (uint32 each) and their count
  (uint32).  The index block maps a separator key to the block handle of each data block.
* The entry of the empty key is a ``BundleHeaderProto`` (1: num_shards, 2: endianness, 0 little,
  3: version); every other value is a ``BundleEntryProto`` (1: dtype, 2: shape, 3: shard_id, 4: offset,
  5: size, 6: crc32c as fixed32, masked; 7: slices, for partitioned variables).
* A data file holds the raw little-endian tensors at those offsets.  A string tensor (the object graph) is
  ``varint64 length`` per element, the masked crc32c of the lengths (as uint32), then the bytes.
* ``_CHECKPOINTABLE_OBJECT_GRAPH`` is a string scalar, a ``TrackableObjectGraph`` (1: nodes; a node has
  1: children ``{1: node_id, 2: local_name}`` and 2: attributes ``{1: name, 2: full_name,
  3: checkpoint_key}``).  Every variable's value is stored under its ``checkpoint_key``.

Which variable is which: the port's SavedModel is a Keras model's (``model.save``), whose object graph gives
the model and each layer it tracks a ``variables`` and a ``trainable_variables`` list (children ``0``,
``1``…).  Keras's ``save_weights`` writes an ``.h5`` layer by layer (``model.layers``, the order the model
tracks them), each layer's trainable weights before the others, then the model's own weights; the reader
rebuilds that order from those lists (the root's own ``variables`` list is in another order: it puts the
transformer's BatchNorm statistics after the backbone blocks).  This was established on SavedModels that
TensorFlow 2.12 wrote from the port's own model (tensors identical, in order, to the same model's ``.h5``);
the Keras reader then maps them with a shape check at every tensor (``keras.keras_to_official``).  The keys
themselves (object-graph paths such as ``variables/17/.ATTRIBUTES/VARIABLE_VALUE``) are never interpreted.

Checks: the crc32c of every table block, of the object graph and of every tensor up to 256 KiB (pure
Python is too slow for the large ones), the byte size of every tensor against its dtype and shape, and the
zip's own CRC-32 over every byte of the data files.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from .keras import keras_to_official

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
OBJECT_GRAPH_KEY = b"_CHECKPOINTABLE_OBJECT_GRAPH"
INDEX_SUFFIX = "variables/variables.index"
CRC_CHECKED_BYTES = 256 << 10
# TensorFlow DataType numbers (types.proto) of the tensors a Keras model holds.
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16, 14: "bfloat16"}


# ----------------------------------------------------------------------------- crc32c (Castagnoli), masked
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    table = _CRC
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unmask(masked: int) -> int:
    """The crc32c a stored (masked) checksum stands for: masking rotates right by 15 bits and adds a constant."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- varints and protobuf fields
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, value) of a protobuf message: an int for varint and fixed fields, bytes for the
    length-delimited ones."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated field")
        yield number, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


# ----------------------------------------------------------------------------- the index table
def _block(data: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size
    if end + 5 > len(data):
        raise ValueError(f"{what} block past the end of the index")
    kind, stored = data[end], int.from_bytes(data[end + 1:end + 5], "little")
    if unmask(stored) != crc32c(data[offset:end + 1]):
        raise ValueError(f"{what} block checksum mismatch")
    if kind != 0:
        raise ValueError(f"{what} block is compressed (type {kind}), which tensor bundles never are")
    return data[offset:end]


def _block_entries(block: bytes):
    if len(block) < 4:
        raise ValueError("block too short")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise ValueError("bad restart count")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        own, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        if shared > len(key) or pos + own + size > end:
            raise ValueError("bad block entry")
        key = key[:shared] + block[pos:pos + own]
        pos += own
        yield key, block[pos:pos + size]
        pos += size


def read_table(data: bytes) -> dict[bytes, bytes]:
    """Every key → value of a table file (the bundle's index)."""
    if len(data) < FOOTER_SIZE or int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
        raise ValueError("no table footer (magic number)")
    footer = data[-FOOTER_SIZE:]
    _, pos = _varint(footer, 0)  # the metaindex handle (no meta blocks in a bundle)
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    table = {}
    for _, handle in _block_entries(_block(data, index_offset, index_size, "index")):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        table.update(_block_entries(_block(data, offset, size, "data")))
    return table


# ----------------------------------------------------------------------------- bundle entries
class _Entry:
    __slots__ = ("dtype", "shape", "shard", "offset", "size", "crc", "sliced")

    def __init__(self, value: bytes):
        self.dtype, self.shape, self.shard, self.offset, self.size, self.crc, self.sliced = 0, [], 0, 0, 0, None, False
        for number, v in _fields(value):
            if number == 1:
                self.dtype = v
            elif number == 2:
                for n, dim in _fields(v):
                    if n == 2:
                        self.shape.append(next((_signed(s) for k, s in _fields(dim) if k == 1), 0))
                    elif n == 3 and dim:
                        raise ValueError("a tensor of unknown rank")
            elif number == 3:
                self.shard = v
            elif number == 4:
                self.offset = v
            elif number == 5:
                self.size = v
            elif number == 6:
                self.crc = v
            elif number == 7:
                self.sliced = True

    def check(self, raw: bytes) -> None:
        if self.crc is not None and len(raw) <= CRC_CHECKED_BYTES and unmask(self.crc) != crc32c(raw):
            raise ValueError("checksum mismatch")

    def array(self, raw: bytes) -> np.ndarray:
        if any(d < 0 for d in self.shape):
            raise ValueError(f"shape {self.shape}")
        count = int(np.prod(self.shape, dtype=np.int64))
        kind = DTYPES.get(self.dtype)
        if kind is None:
            raise ValueError(f"TensorFlow dtype {self.dtype}, not a float or integer one")
        width = 2 if kind == "bfloat16" else np.dtype(kind).itemsize
        if self.size != count * width or len(raw) != self.size:
            raise ValueError(f"{self.size} bytes stored for {count} elements of {width} bytes")
        self.check(raw)
        if kind == "bfloat16":  # the upper half of a float32
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, np.dtype(kind).newbyteorder("<"))
        return a.astype(np.float32).reshape(self.shape)


def _strings(raw: bytes, count: int, stored_crc: int | None) -> list[bytes]:
    """The elements of a string tensor's bytes.  Its checksum covers the lengths (as uint32), the stored
    checksum of the lengths, then the bytes."""
    lengths, pos, crc = [], 0, 0
    for _ in range(count):
        n, pos = _varint(raw, pos)
        lengths.append(n)
        crc = crc32c(struct.pack("<I", n) if n <= 0xFFFFFFFF else struct.pack("<Q", n), crc)
    if unmask(int.from_bytes(raw[pos:pos + 4], "little")) != crc:
        raise ValueError("string lengths checksum mismatch")
    crc = crc32c(raw[pos:pos + 4], crc)
    pos += 4
    out = []
    for n in lengths:
        out.append(raw[pos:pos + n])
        crc = crc32c(out[-1], crc)
        pos += n
    if pos != len(raw):
        raise ValueError("string tensor size mismatch")
    if stored_crc is not None and unmask(stored_crc) != crc:
        raise ValueError("checksum mismatch")
    return out


# ----------------------------------------------------------------------------- the object graph
def _object_graph(raw: bytes) -> list[dict]:
    """The nodes of a ``TrackableObjectGraph``: {"children": {local_name: node_id}, "keys": {name: checkpoint_key}}."""
    nodes = []
    for number, node in _fields(raw):
        if number != 1:
            continue
        children, keys = {}, {}
        for n, v in _fields(node):
            if n == 1:
                ref = dict(_fields(v))
                children[ref.get(2, b"").decode("utf-8")] = ref.get(1, 0)
            elif n == 2:
                attr = dict(_fields(v))
                keys[attr.get(1, b"").decode("utf-8")] = attr.get(3, b"")
        nodes.append({"children": children, "keys": keys})
    return nodes


def _listed(nodes: list[dict], node: int, name: str) -> list[int] | None:
    """The node ids of the list child ``name`` of ``node`` (children ``0``, ``1``…), or None."""
    if name not in nodes[node]["children"]:
        return None
    items = nodes[nodes[node]["children"][name]]["children"]
    if set(items) != {str(i) for i in range(len(items))}:
        raise ValueError(f"its {name!r} list is not numbered 0, 1, ...")
    return [items[str(i)] for i in range(len(items))]


def keras_variable_keys(nodes: list[dict]) -> list[bytes]:
    """The checkpoint keys of the model's variables in the order Keras's ``save_weights`` writes an ``.h5``:
    each layer the model tracks (a child with its own ``variables`` list and ``keras_api``, in the order the
    model tracks them, which is ``model.layers``), its ``trainable_variables`` then the rest of its
    ``variables``; then the model's own variables in the order of its ``variables`` list."""
    everything = _listed(nodes, 0, "variables") if nodes else None
    if everything is None:
        raise ValueError("its root object has no 'variables' list (not a Keras model's SavedModel)")
    order: list[int] = []
    for name, child in nodes[0]["children"].items():
        if name == "keras_api" or "keras_api" not in nodes[child]["children"]:
            continue
        own = _listed(nodes, child, "variables")
        if own is None:
            continue
        trainable = _listed(nodes, child, "trainable_variables") or []
        order += trainable + [v for v in own if v not in trainable]
    order += [v for v in everything if v not in order]
    if len(set(order)) != len(order) or set(order) != set(everything):
        raise ValueError("its layers' variables are not those of the model")
    keys = []
    for i, node in enumerate(order):
        if "VARIABLE_VALUE" not in nodes[node]["keys"]:
            raise ValueError(f"variable {i} has no stored value")
        keys.append(nodes[node]["keys"]["VARIABLE_VALUE"])
    return keys


# ----------------------------------------------------------------------------- the zip
def _index_member(z: zipfile.ZipFile) -> str | None:
    found = [n for n in z.namelist() if n == INDEX_SUFFIX or n.endswith("/" + INDEX_SUFFIX)]
    return min(found, key=len) if found else None


def is_savedmodel_zip(path) -> bool:
    """Whether ``path`` is a zip archive holding a SavedModel's ``variables/variables.index``."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return False
        with zipfile.ZipFile(path) as z:
            return _index_member(z) is not None
    except (OSError, zipfile.BadZipFile):
        return False


def read_savedmodel_weights(path) -> list[tuple[str, np.ndarray]]:
    """The variables of the Keras model in a SavedModel zip, as (checkpoint key, float32 array), in the order
    Keras's ``save_weights`` writes them to an ``.h5``."""
    path = Path(path)

    def bad(why: str):
        return CheckpointError(f"{path}: not a readable TensorFlow SavedModel of a Keras model ({why})")

    try:
        with zipfile.ZipFile(path) as z:
            member = _index_member(z)
            if member is None:
                raise bad(f"no {INDEX_SUFFIX} in the archive")
            prefix = member[:-len("index")]
            try:
                table = read_table(z.read(member))
                header = dict(_fields(table.get(b"", b"")))
                if b"" not in table or header.get(2, 0) != 0:
                    raise ValueError("no little-endian bundle header")
                shards = header.get(1, 1)
                entries = {k: _Entry(v) for k, v in table.items() if k}
            except ValueError as e:
                raise bad(f"the index: {e}") from None
            if OBJECT_GRAPH_KEY not in entries:
                raise bad("no object graph in the bundle")
            # one pass over the data (the object graph is stored last): every stored tensor is read
            raw = _read_entries(z, prefix, shards, {k: e for k, e in entries.items() if not e.sliced}, bad)
            try:
                graph = _strings(raw[OBJECT_GRAPH_KEY], 1, entries[OBJECT_GRAPH_KEY].crc)[0]
                keys = keras_variable_keys(_object_graph(graph))
            except ValueError as e:
                raise bad(f"the object graph: {e}") from None
            missing = [k for k in keys if k not in entries]
            if missing:
                raise bad(f"variable {missing[0].decode(errors='replace')} is not stored")
            sliced = [k for k in keys if entries[k].sliced]
            if sliced:
                raise bad(f"variable {sliced[0].decode(errors='replace')} is partitioned")
            out = []
            for k in keys:
                try:
                    out.append((k.decode("utf-8"), entries[k].array(raw[k])))
                except ValueError as e:
                    raise bad(f"tensor {k.decode(errors='replace')}: {e}") from None
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path} is damaged or truncated (a zip archive that cannot be read: {e}); "
                              "download it again") from None
    if not out:
        raise bad("no variables")
    return out


def _read_entries(z: zipfile.ZipFile, prefix: str, shards: int, entries: dict, bad) -> dict[bytes, bytes]:
    """The stored bytes of ``entries``, each data file read once from start to end (so the zip checks its CRC)."""
    out = {}
    for shard in range(shards):
        name = f"{prefix}data-{shard:05d}-of-{shards:05d}"
        todo = sorted(((e.offset, k) for k, e in entries.items() if e.shard == shard))
        if not todo:
            continue
        try:
            info = z.getinfo(name)
        except KeyError:
            raise bad(f"no data file {name}") from None
        with z.open(info) as f:
            pos = 0
            for offset, k in todo:
                if offset < pos or offset + entries[k].size > info.file_size:
                    raise bad(f"tensor {k.decode(errors='replace')} lies outside its data file")
                while pos < offset:
                    pos += len(f.read(min(offset - pos, 1 << 24)))
                out[k] = f.read(entries[k].size)
                pos += len(out[k])
            while f.read(1 << 24):  # to the end: a damaged member fails its CRC-32 here
                pass
    return out


def load_savedmodel_zip(path) -> dict:
    """The official-layout state dict of the port's SavedModel zip."""
    return keras_to_official(read_savedmodel_weights(path), path)
