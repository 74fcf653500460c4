"""One interface for machine-task heads on (partially) decoded images: ``predict(image) -> Instances``.

Backends register themselves by name (timm-style decorator registry); ``build_head`` picks one.
The pretrained SSDLite person detector (``ssdlite-person``) is the default; torchvision Mask R-CNN
takes a user's COCO weights; detectron2 is used only when it is importable and asked for.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ssc.errors import WeightsError

from .structures import Instances

if TYPE_CHECKING:
    import torch

TASKS = ("detect", "segment", "pose")
#: the backend of the person keypoints and person masks, the default of those tasks (ssc.tasks.blazepose)
POSE_BACKEND = "blazepose"
#: the backend used when none is named: the pretrained person detector (ssc.tasks.ssdlite)
DEFAULT_BACKEND = "ssdlite-person"
#: the backend of a user's own COCO checkpoint (``--det-weights`` without ``--backend``)
WEIGHTS_BACKEND = "torchvision"


@dataclass(frozen=True)
class Category:
    id: int  # COCO category id (1..90)
    name: str


@dataclass
class HeadInfo:
    """What a head is and what it was trained on (shown by ``ssc analyze`` and written to results)."""

    backend: str
    architecture: str
    weights: str
    categories: list[Category] = field(default_factory=list)
    notes: str = ""
    masks: bool = True  # the head predicts instance masks (segmentation), not only boxes

    def category_name(self, cid: int) -> str:
        for c in self.categories:
            if c.id == cid:
                return c.name
        return str(cid)


class TaskHead(ABC):
    """Detection / instance segmentation on an (H, W, 3) uint8 RGB image."""

    info: HeadInfo

    @abstractmethod
    def predict(self, image: np.ndarray, masks: bool = True) -> Instances:
        """Boxes xyxy in pixels, scores, COCO category ids, and (N, H, W) bool masks (None when
        ``masks`` is False: detection only, the mask branch is skipped where the backend allows)."""

    def predict_features(self, features: "dict[str, torch.Tensor]", image_size: tuple[int, int],
                         masks: bool = True) -> Instances:
        """The same from the detector's intermediate features (an Omni-ICM feature codec's output for
        the detector it was distilled from) instead of pixels; heads without that entry refuse."""
        raise NotImplementedError(f"the {self.info.backend} head does not read features")


_BACKENDS: dict[str, Callable[..., TaskHead]] = {}


def register_backend(name: str) -> Callable[[Callable[..., TaskHead]], Callable[..., TaskHead]]:
    def deco(fn: Callable[..., TaskHead]) -> Callable[..., TaskHead]:
        if name in _BACKENDS:
            raise ValueError(f"task backend {name!r} registered twice")
        _BACKENDS[name] = fn
        return fn

    return deco


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


def resolve_detector(backend: str | None, weights: str | None, teacher: tuple[str, str] | None = None,
                     task: str = "detect") -> tuple[str, str | None]:
    """(backend, weights) a command uses: the backend named, else :data:`WEIGHTS_BACKEND` when
    detector weights are given (a user's COCO checkpoint), else :data:`POSE_BACKEND` for keypoints
    (``task`` pose) and person masks (segment), else :data:`DEFAULT_BACKEND`. ``teacher``:
    the (backend, weights) an Omni feature head was distilled from, the only detector that can read
    its features: asking for another one is refused, asking for none gives that one."""
    if teacher is None:
        default = POSE_BACKEND if task in ("pose", "segment") else DEFAULT_BACKEND
        return backend or (WEIGHTS_BACKEND if weights else default), weights
    tb, tw = teacher
    if (backend or tb) != tb or (weights is not None and Path(weights).stem != tw):
        raise WeightsError(f"the feature head was distilled from the {tb} detector {tw!r}; only that detector "
                           "can read its features (use --domain pixels for others)")
    return tb, tw


def resolve_head(backend: str | None = None, weights: str | None = None, device: str = "cpu",
                 score_thresh: float | None = None, teacher: tuple[str, str] | None = None,
                 task: str = "detect") -> TaskHead:
    """The task head of a command (the CLI, batch jobs and the benchmarks all choose it here): the
    head of :func:`resolve_detector`, built once per process (:func:`shared_head`)."""
    return shared_head(*resolve_detector(backend, weights, teacher, task), device, score_thresh)


@lru_cache(maxsize=4)
def shared_head(backend: str, weights: str | None, device: str = "cpu", score_thresh: float | None = None) -> TaskHead:
    """One built head per (backend, weights, device, threshold) in each process, reused by its jobs."""
    kw = {} if score_thresh is None else {"score_thresh": score_thresh}
    return build_head(backend, weights, device=device, **kw)


def build_head(backend: str = DEFAULT_BACKEND, weights: str | None = None, device: str = "cpu", **kw) -> TaskHead:
    """A task head of ``backend`` with ``weights`` (a zoo name, a .safetensors file with a model card,
    or a user's own COCO-trained checkpoint; see the backend)."""
    from . import blazepose, detectron2_backend, torchvision_backend  # noqa: F401  (register the backends)
    from .ssdlite import backend as _ssdlite  # noqa: F401

    try:
        fn = _BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown task backend {backend!r}; known: {', '.join(list_backends())}") from None
    return fn(weights=weights, device=device, **kw)
