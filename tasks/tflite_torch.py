"""A TFLite flatbuffer as a differentiable PyTorch module: the graph of a ``.tflite`` file executed op by
op with its own weights, so that a task loss can send gradients through a network that ships only as
TFLite (BlazePose GHUM, Bazarevsky et al., CVPR-W 2020, in the ``mediapipe==0.10.21`` wheel).

The flatbuffer is read with the ``tflite`` package (the TensorFlow Lite schema's generated Python
bindings); nothing of TensorFlow is needed. Only the ops the shipped pose network uses are supported
(float32 with float16 weights): ``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``ADD``, ``PAD``, ``MAX_POOL_2D``,
``RESIZE_BILINEAR`` (half-pixel centres), ``RESHAPE``, ``LOGISTIC`` and ``DEQUANTIZE``; any other op is
refused by name when the file is loaded. Activations run NCHW inside; inputs and 4-D outputs are NHWC,
as in TFLite. Inference for the heads stays on the LiteRT runtime (bit-exact with the reference
outputs); this module is what trains against them, checked against LiteRT in the tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssc.errors import WeightsError

SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "MAX_POOL_2D", "RESIZE_BILINEAR", "RESHAPE",
             "LOGISTIC", "DEQUANTIZE")


@dataclass
class Op:
    """One operator: its name, tensor indices and the options the executor reads."""

    name: str
    inputs: list[int]
    outputs: list[int]
    opts: dict = field(default_factory=dict)


def _tflite():
    try:
        import tflite  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - installed by make install
        raise WeightsError("reading a .tflite graph into PyTorch needs the tflite package: "
                           "pip install tflite==2.18.0 (or make install)") from e
    return tflite


def _options(tfl, op, name: str) -> dict:
    """The builtin options the executor needs, as a plain dict."""
    raw = op.BuiltinOptions()
    act = {tfl.ActivationFunctionType.NONE: None, tfl.ActivationFunctionType.RELU6: "relu6",
           tfl.ActivationFunctionType.RELU: "relu"}
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = tfl.Conv2DOptions() if name == "CONV_2D" else tfl.DepthwiseConv2DOptions()
        o.Init(raw.Bytes, raw.Pos)
        if o.FusedActivationFunction() not in act:
            raise WeightsError(f"{name}: unsupported fused activation {o.FusedActivationFunction()}")
        return {"stride": (o.StrideH(), o.StrideW()), "dilation": (o.DilationHFactor(), o.DilationWFactor()),
                "same": o.Padding() == tfl.Padding.SAME, "act": act[o.FusedActivationFunction()]}
    if name == "ADD":
        o = tfl.AddOptions()
        o.Init(raw.Bytes, raw.Pos)
        return {"act": act[o.FusedActivationFunction()]}
    if name == "MAX_POOL_2D":
        o = tfl.Pool2DOptions()
        o.Init(raw.Bytes, raw.Pos)
        return {"kernel": (o.FilterHeight(), o.FilterWidth()), "stride": (o.StrideH(), o.StrideW()),
                "same": o.Padding() == tfl.Padding.SAME, "act": act[o.FusedActivationFunction()]}
    if name == "RESIZE_BILINEAR":
        o = tfl.ResizeBilinearOptions()
        o.Init(raw.Bytes, raw.Pos)
        if o.AlignCorners() or not o.HalfPixelCenters():
            raise WeightsError("RESIZE_BILINEAR: only half-pixel centres without aligned corners are supported")
        return {}
    return {}


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one axis: the extra pixel goes after."""
    eff = (k - 1) * d + 1
    total = max((math.ceil(size / s) - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _activate(x: torch.Tensor, act: str | None) -> torch.Tensor:
    if act == "relu6":
        return F.relu6(x)
    if act == "relu":
        return F.relu(x)
    return x


class TFLiteGraph(torch.nn.Module):
    """``forward(x) -> dict[name, tensor]``: the graph's outputs by their tensor names for a (B, H, W, C)
    input, each 4-D output NHWC. Weights are buffers (frozen; ``requires_grad_`` is not needed to pass
    gradients to the input)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        tfl = _tflite()
        buf = Path(path).read_bytes()
        try:
            if len(buf) < 8 or buf[4:8] != b"TFL3":
                raise ValueError("no TFL3 identifier")
            model = tfl.Model.GetRootAsModel(buf, 0)
            n_sub = model.SubgraphsLength()
        except Exception as e:  # the flatbuffer reader raises assorted errors on damaged files
            raise WeightsError(f"{path}: not a readable TFLite flatbuffer ({e})") from e
        if n_sub != 1:
            raise WeightsError(f"{path}: {n_sub} subgraphs; one is supported")
        g = model.Subgraphs(0)
        codes = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
        self.ops: list[Op] = []
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = codes.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            if name not in SUPPORTED:
                raise WeightsError(f"{path}: op {i} is {name}; supported: {', '.join(SUPPORTED)}")
            self.ops.append(Op(name, [int(j) for j in op.InputsAsNumpy()], [int(j) for j in op.OutputsAsNumpy()],
                               _options(tfl, op, name)))
        self.shapes = {j: tuple(int(s) for s in g.Tensors(j).ShapeAsNumpy()) for j in range(g.TensorsLength())}
        self.input = int(g.Inputs(0))
        self.outputs = {g.Tensors(int(j)).Name().decode(): int(j) for j in g.OutputsAsNumpy()}
        dtypes = {tfl.TensorType.FLOAT32: np.float32, tfl.TensorType.FLOAT16: np.float16,
                  tfl.TensorType.INT32: np.int32}
        self._const: dict[int, str] = {}
        for j in range(g.TensorsLength()):
            t = g.Tensors(j)
            data = model.Buffers(t.Buffer()).DataAsNumpy()
            if isinstance(data, int) or data.size == 0:
                continue
            if t.Type() not in dtypes:
                raise WeightsError(f"{path}: constant tensor {j} has unsupported type {t.Type()}")
            arr = np.frombuffer(data.tobytes(), dtype=dtypes[t.Type()]).reshape(self.shapes[j] or ())
            key = f"t{j}"
            self.register_buffer(key, torch.from_numpy(arr.astype(np.float32) if arr.dtype == np.float16
                                                       else arr.copy()), persistent=False)
            self._const[j] = key
        # weights of convolutions, converted once to PyTorch's layout (after DEQUANTIZE, below)
        self._dequant = {op.outputs[0]: op.inputs[0] for op in self.ops if op.name == "DEQUANTIZE"}
        for op in self.ops:
            if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = self._constant(op.inputs[1])
                w = w.permute(0, 3, 1, 2) if op.name == "CONV_2D" else w.permute(3, 0, 1, 2)  # OIHW / (C,1,H,W)
                self.register_buffer(f"w{op.outputs[0]}", w.contiguous(), persistent=False)
                b = self._constant(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
                self.register_buffer(f"b{op.outputs[0]}", b, persistent=False)

    def _constant(self, j: int) -> torch.Tensor:
        j = self._dequant.get(j, j)
        if j not in self._const:
            raise WeightsError(f"tensor {j} was expected to be a constant")
        return getattr(self, self._const[j])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shapes[self.input][1:]:
            raise ValueError(f"input of shape {tuple(x.shape)}; the graph takes (B, {self.shapes[self.input][1:]})")
        vals: dict[int, torch.Tensor] = {self.input: x.permute(0, 3, 1, 2)}  # NCHW inside
        for op in self.ops:
            if op.name == "DEQUANTIZE":
                continue
            vals[op.outputs[0]] = self._run(op, vals)
        out = {}
        for name, j in self.outputs.items():
            v = vals[j]
            out[name] = v.permute(0, 2, 3, 1) if v.dim() == 4 else v
        return out

    def _run(self, op: Op, vals: dict[int, torch.Tensor]) -> torch.Tensor:
        o = op.opts
        x = vals[op.inputs[0]]
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w, b = getattr(self, f"w{op.outputs[0]}"), getattr(self, f"b{op.outputs[0]}")
            if o["same"]:
                ph = _same_pad(x.shape[2], w.shape[2], o["stride"][0], o["dilation"][0])
                pw = _same_pad(x.shape[3], w.shape[3], o["stride"][1], o["dilation"][1])
                x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
            groups = x.shape[1] if op.name == "DEPTHWISE_CONV_2D" else 1
            y = F.conv2d(x, w, b, stride=o["stride"], dilation=o["dilation"], groups=groups)
            return _activate(y, o["act"])
        if op.name == "ADD":
            a, c = (vals[j] if j in vals else self._nchw(self._constant(j)) for j in op.inputs)
            return _activate(a + c, o["act"])
        if op.name == "PAD":
            p = self._constant(op.inputs[1]).long().tolist()  # NHWC [[before, after]] per axis
            if p[0] != [0, 0]:
                raise ValueError("PAD of the batch axis is not supported")
            return F.pad(x, (p[2][0], p[2][1], p[1][0], p[1][1], p[3][0], p[3][1]))
        if op.name == "MAX_POOL_2D":
            if o["same"]:
                ph = _same_pad(x.shape[2], o["kernel"][0], o["stride"][0], 1)
                pw = _same_pad(x.shape[3], o["kernel"][1], o["stride"][1], 1)
                x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=-math.inf)
            return _activate(F.max_pool2d(x, o["kernel"], o["stride"]), o["act"])
        if op.name == "RESIZE_BILINEAR":
            size = [int(s) for s in self._constant(op.inputs[1]).tolist()]
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if op.name == "LOGISTIC":
            return torch.sigmoid(x)
        if op.name == "RESHAPE":
            shape = self.shapes[op.outputs[0]]
            v = x.permute(0, 2, 3, 1) if x.dim() == 4 else x  # reshape in TFLite's NHWC order
            v = v.reshape((x.shape[0],) + shape[1:])
            return v.permute(0, 3, 1, 2) if v.dim() == 4 else v
        raise AssertionError(op.name)  # refused at load

    @staticmethod
    def _nchw(v: torch.Tensor) -> torch.Tensor:
        """A constant operand in the NCHW layout: NHWC 4-D tensors permuted, per-channel vectors (C,) as (1, C, 1, 1)."""
        if v.dim() == 4:
            return v.permute(0, 3, 1, 2)
        return v.view(1, -1, 1, 1) if v.dim() == 1 else v
