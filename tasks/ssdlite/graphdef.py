"""A small reader of TensorFlow frozen graphs (``GraphDef`` protobuf) without TensorFlow or protobuf.

Only what a frozen inference graph needs is decoded: every node's name, op, inputs and attributes,
and constant tensors (``Const`` nodes' ``value``) as NumPy arrays. The wire format is protobuf's
(varints, length-delimited fields); field numbers follow tensorflow/core/framework/{graph,node_def,
attr_value,tensor,tensor_shape,types}.proto.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

# tensorflow/core/framework/types.proto -> NumPy
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_}


class GraphDefError(ValueError):
    """The file is not a GraphDef this reader understands."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise GraphDefError("truncated varint")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
        if shift > 63:
            raise GraphDefError("varint too long")


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one message: ints for varint/fixed, views for bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4
            if pos + n > len(buf):
                raise GraphDefError("truncated fixed-width field")
            val, pos = struct.unpack_from("<Q" if wt == 1 else "<I", buf, pos)[0], pos + n
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise GraphDefError("truncated length-delimited field")
            val, pos = buf[pos : pos + n], pos + n
        else:
            raise GraphDefError(f"unsupported wire type {wt}")
        yield num, wt, val


def _int(v: int | memoryview) -> int:
    if not isinstance(v, int):
        raise GraphDefError("expected a scalar field, found a length-delimited one")
    return v


def _buf(v: int | memoryview) -> memoryview:
    if not isinstance(v, memoryview):
        raise GraphDefError("expected a length-delimited field, found a scalar")
    return v


def _f32(v: int) -> float:
    return struct.unpack("<f", struct.pack("<I", v))[0]


def _packed(val: int | memoryview, wt: int, fmt: str) -> list:
    """A repeated scalar field: packed (length-delimited) or one element."""
    if wt == 2:
        assert isinstance(val, memoryview)
        if fmt == "varint":
            out, pos = [], 0
            while pos < len(val):
                v, pos = _varint(val, pos)
                out.append(v)
            return out
        if len(val) % 4:
            raise GraphDefError("packed floats of a length that is not a multiple of 4")
        return list(struct.unpack(f"<{len(val) // 4}{fmt}", val))
    assert isinstance(val, int)
    return [_f32(val)] if fmt == "f" else [val]


def _signed(v: int | memoryview) -> int:
    v = _int(v)
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_shape(buf: memoryview) -> list[int]:
    dims = []
    for num, _, val in fields(buf):
        if num == 2:  # dim { size = 1 }
            size = 0
            for n2, _, v2 in fields(_buf(val)):
                if n2 == 1:
                    size = _signed(v2)
            dims.append(size)
    return dims


def parse_tensor(buf: memoryview) -> np.ndarray:
    """TensorProto -> array (tensor_content, or the typed *_val fields, broadcast to the shape)."""
    dtype, shape, content = 1, [], None
    floats: list[float] = []
    ints: list[int] = []
    strings: list[bytes] = []
    for num, wt, val in fields(buf):
        if num == 1:
            dtype = _int(val)
        elif num == 2:
            shape = parse_shape(_buf(val))
        elif num == 4:
            content = bytes(_buf(val))
        elif num == 5:
            floats += _packed(val, wt, "f")
        elif num in (7, 10, 11):  # int_val, int64_val, bool_val
            ints += [_signed(v) for v in _packed(val, wt, "varint")]
        elif num == 8:  # string_val
            strings.append(bytes(_buf(val)))
    if dtype == 7:  # DT_STRING
        return np.array(strings, dtype=object).reshape(shape if strings and shape else -1)
    if dtype not in _DTYPES:
        raise GraphDefError(f"unsupported tensor dtype {dtype}")
    np_dtype = _DTYPES[dtype]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=np.dtype(np_dtype).newbyteorder("<")).astype(np_dtype)
    else:
        vals = floats if np_dtype in (np.float32, np.float64) else ints
        arr = np.array(vals, dtype=np_dtype)
        if arr.size and arr.size != count:
            arr = np.concatenate([arr, np.repeat(arr[-1:], count - arr.size)])
        elif not arr.size:
            arr = np.zeros(count, dtype=np_dtype)
    if arr.size != count:
        raise GraphDefError(f"tensor holds {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def parse_attr(buf: memoryview) -> object:
    """AttrValue: string, int, float, bool, type, shape, tensor, or a list of ints/floats/strings."""
    for num, wt, val in fields(buf):
        if num == 2:
            return bytes(_buf(val)).decode("utf-8", "replace")
        if num == 3:
            return _signed(val)
        if num == 4:
            return _f32(_int(val))
        if num in (5, 6):
            return _int(val)
        if num == 7:
            return parse_shape(_buf(val))
        if num == 8:
            return parse_tensor(_buf(val))
        if num == 1:  # ListValue
            items: list = []
            for n2, w2, v2 in fields(_buf(val)):
                if n2 == 2:
                    items.append(bytes(_buf(v2)).decode("utf-8", "replace"))
                elif n2 == 3:
                    items += [_signed(v) for v in _packed(v2, w2, "varint")]
                elif n2 == 4:
                    items += _packed(v2, w2, "f")
            return items
    return None


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, object] = field(default_factory=dict)


def _text(v: int | memoryview) -> str:
    try:
        return bytes(_buf(v)).decode()
    except UnicodeDecodeError as e:
        raise GraphDefError(f"bad string in graph: {e}") from None


def parse_node(buf: memoryview) -> Node:
    node = Node("", "")
    for num, _, val in fields(buf):
        if num == 1:
            node.name = _text(val)
        elif num == 2:
            node.op = _text(val)
        elif num == 3:
            node.inputs.append(_text(val))
        elif num == 5:  # map<string, AttrValue> entry: key = 1, value = 2
            key, value = "", None
            for n2, _, v2 in fields(_buf(val)):
                if n2 == 1:
                    key = _text(v2)
                elif n2 == 2:
                    value = parse_attr(_buf(v2))
            node.attr[key] = value
    return node


def read_graph(path: str | Path) -> dict[str, Node]:
    """All nodes of a frozen GraphDef file, by name."""
    data = memoryview(Path(path).read_bytes())
    nodes: dict[str, Node] = {}
    for num, _, val in fields(data):
        if num == 1:
            n = parse_node(_buf(val))
            nodes[n.name] = n
    if not nodes:
        raise GraphDefError(f"{path}: no graph nodes found")
    return nodes


def constants(nodes: dict[str, Node]) -> dict[str, np.ndarray]:
    """Every ``Const`` node's value, by node name."""
    return {n.name: n.attr["value"] for n in nodes.values() if n.op == "Const" and isinstance(n.attr.get("value"), np.ndarray)}
