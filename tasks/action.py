"""Action recognition on (partially) decoded clips with torchvision's video classifiers (R3D-18, MC3-18,
R(2+1)D-18 of Tran et al., CVPR 2018; S3D; MViT-v2-S; Swin3D-T), the video task head of SSVC.

ssc ships no action weights: no action-labelled training video is available to it and nothing may be
downloaded. Users pass their own checkpoint (torchvision's Kinetics-400 ``.pth`` files load as they are,
with ``weights_only`` unpickling; ``.safetensors`` too) and a label map (one class name per line, e.g.
``label_map_k400.txt``). ``random_init=True`` builds an untrained network, for plumbing tests only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ssc.errors import SSCError, WeightsError


@dataclass(frozen=True)
class ActionArch:
    build: Callable[..., torch.nn.Module]
    frames: int  # clip length the model expects
    crop: int  # square crop side
    short_side: int  # resize target of the short side before the crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_KINETICS = ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
ACTION_ARCHS: dict[str, ActionArch] = {}


def register_action(name: str, frames: int, crop: int, short_side: int, norm=_KINETICS):
    def deco(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        ACTION_ARCHS[name] = ActionArch(fn, frames, crop, short_side, *norm)
        return fn

    return deco


def _tv(name: str) -> Callable[..., torch.nn.Module]:
    def build(num_classes: int) -> torch.nn.Module:
        import torchvision.models.video as vm

        return getattr(vm, name)(weights=None, num_classes=num_classes)

    return build


for _name, _frames, _crop, _short, _norm in (("r3d_18", 16, 112, 128, _KINETICS), ("mc3_18", 16, 112, 128, _KINETICS),
                                             ("r2plus1d_18", 16, 112, 128, _KINETICS), ("s3d", 32, 224, 256, _KINETICS),
                                             ("mvit_v2_s", 16, 224, 256, _KINETICS), ("swin3d_t", 32, 224, 256, _IMAGENET)):
    register_action(_name, _frames, _crop, _short, _norm)(_tv(_name))


@dataclass
class ActionPrediction:
    labels: list[str]  # top-k, best first
    scores: list[float]  # softmax probabilities of those labels
    probs: np.ndarray  # (num_classes,) all probabilities
    feature: np.ndarray  # penultimate (pooled) feature


def read_label_map(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"label map not found: {p}")
    names = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
    if not names:
        raise SSCError(f"{p}: empty label map")
    return names


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"action weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for foreign files
        raise WeightsError(f"{path}: not a loadable state dict ({e})") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict")
    return state


class VideoClassifier:
    """``predict(clip)`` on a (T, H, W, 3) uint8 clip: uniform temporal sampling to the model's length,
    short-side resize, centre crop, normalisation, softmax."""

    def __init__(self, arch: str = "r3d_18", weights: str | Path | None = None, labels: list[str] | str | Path | None = None,
                 device: str = "cpu", random_init: bool = False, top_k: int = 5) -> None:
        if arch not in ACTION_ARCHS:
            raise SSCError(f"unknown action model {arch!r} (known: {sorted(ACTION_ARCHS)})")
        self.spec = ACTION_ARCHS[arch]
        self.labels = read_label_map(labels) if isinstance(labels, (str, Path)) else list(labels or [])
        if weights is None and not random_init:
            raise WeightsError("action recognition needs weights (e.g. torchvision's Kinetics-400 r3d_18 checkpoint): "
                               "ssc ships none, having no action-labelled training video")
        state = _load_state(Path(weights)) if weights is not None else None
        n = len(self.labels) or (int(state[[k for k in state if k.endswith("weight")][-1]].shape[0]) if state else 400)
        if not self.labels:
            self.labels = [f"class {i}" for i in range(n)]
        torch.manual_seed(0)
        self.model = self.spec.build(num_classes=n)
        if state is not None:
            from ssc.models.zoo import load_state_checked

            load_state_checked(self.model, state, f"action weights {weights}", arch)
        self.model.to(device).eval()
        self.device, self.top_k, self.arch = device, top_k, arch
        self._feat: torch.Tensor | None = None
        last = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.register_forward_hook(lambda mod, inp, out: setattr(self, "_feat", inp[0].detach()))

    def preprocess(self, clip: np.ndarray) -> torch.Tensor:
        if clip.ndim != 4 or clip.shape[-1] != 3 or len(clip) == 0:
            raise SSCError(f"clip must be (T, H, W, 3), got {clip.shape}")
        s = self.spec
        idx = np.linspace(0, len(clip) - 1, s.frames).round().astype(int)
        x = torch.from_numpy(np.ascontiguousarray(clip[idx])).permute(0, 3, 1, 2).float().div(255)  # T C H W
        h, w = x.shape[-2:]
        scale = s.short_side / min(h, w)
        x = F.interpolate(x, size=(max(s.crop, round(h * scale)), max(s.crop, round(w * scale))), mode="bilinear",
                          align_corners=False, antialias=True)
        h, w = x.shape[-2:]
        y0, x0 = (h - s.crop) // 2, (w - s.crop) // 2
        x = x[..., y0 : y0 + s.crop, x0 : x0 + s.crop]
        x = (x - torch.tensor(s.mean).view(1, 3, 1, 1)) / torch.tensor(s.std).view(1, 3, 1, 1)
        return x.permute(1, 0, 2, 3).unsqueeze(0).to(self.device)  # 1 C T H W

    @torch.no_grad()
    def predict(self, clip: np.ndarray) -> ActionPrediction:
        probs = self.model(self.preprocess(clip)).softmax(-1)[0].cpu()
        top = probs.topk(min(self.top_k, len(probs)))
        return ActionPrediction([self.labels[i] for i in top.indices.tolist()], top.values.tolist(), probs.numpy(),
                                self._feat[0].flatten().cpu().numpy() if self._feat is not None else np.zeros(0))
