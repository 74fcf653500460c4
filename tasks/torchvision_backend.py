"""torchvision Mask R-CNN backend (He et al., ICCV 2017) for a user's own COCO weights.

Weights (``--det-weights``, required: the default task head is the pretrained person detector):
* a zoo entry with a model card (SHA-256 checked), e.g. ``det-ref``, ssc's CPU-trained training
  example (it detects almost nothing; it taught the retired gi-omni-s feature codec);
* a user's COCO-trained torchvision checkpoint: a ``.safetensors``
  file, or a ``.pth``/``.pt`` state dict read with ``torch.load(weights_only=True)`` (tensors only, no
  code is unpickled). Without a model card it is taken to be ``maskrcnn_resnet50_fpn`` with the 91
  COCO label slots, torchvision's convention (label = COCO category id).
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssc.errors import WeightsError

from .heads import Category, HeadInfo, TaskHead, register_backend
from .structures import Instances

NUM_LABEL_SLOTS = 91  # torchvision's COCO convention: label index = COCO category id, 0 = background


def build_maskrcnn(arch: str, num_classes: int = NUM_LABEL_SLOTS, min_size: int = 800, max_size: int = 1333,
                   fpn_channels: int = 128) -> torch.nn.Module:
    """Untrained Mask R-CNN of a named architecture (no download: every backbone starts random).
    ``fpn_channels`` applies to the "lite" variants."""
    from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
    from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone

    if arch == "maskrcnn_resnet50_fpn":
        return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes,
                                     min_size=min_size, max_size=max_size)
    # trained from scratch, so BatchNorm layers train too (torchvision's default freezes them)
    if arch == "maskrcnn_resnet18_fpn":
        bb = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5)
        return MaskRCNN(bb, num_classes=num_classes, min_size=min_size, max_size=max_size)
    if arch == "maskrcnn_mobilenet_v3_fpn":
        bb = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, norm_layer=nn.BatchNorm2d,
                                trainable_layers=6)
        anchor_sizes = ((32, 64, 128, 256, 512),) * 3
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
        return MaskRCNN(bb, num_classes=num_classes, rpn_anchor_generator=anchors, min_size=min_size, max_size=max_size)
    if arch in ("maskrcnn_mobilenet_v3_lite", "maskrcnn_resnet18_lite"):
        return _lite_maskrcnn(arch, num_classes, min_size, max_size, fpn_channels)
    raise ValueError(f"unknown detector architecture {arch!r}")


def _lite_maskrcnn(arch: str, num_classes: int, min_size: int, max_size: int, fpn_channels: int = 128) -> torch.nn.Module:
    """A CPU-trainable Mask R-CNN: 128-channel FPN, a 512-wide box head, a two-layer mask head and
    smaller proposal budgets (the reference detector of ssc, trained without a GPU)."""
    from torchvision.models import mobilenet_v3_large, resnet18
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if arch == "maskrcnn_mobilenet_v3_lite":
        feats = mobilenet_v3_large(weights=None, norm_layer=nn.BatchNorm2d).features
        stages = [i for i, b in enumerate(feats) if getattr(b, "_is_cn", False)] + [len(feats) - 1]
        picks = stages[-3:]
        body_layers = {str(i): str(k) for k, i in enumerate(picks)}
        in_ch = [feats[i].out_channels for i in picks]
        backbone = BackboneWithFPN(feats, body_layers, in_ch, fpn_channels, extra_blocks=LastLevelMaxPool())
    else:
        r = resnet18(weights=None)
        body = nn.Sequential()
        for n in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            body.add_module(n, getattr(r, n))
        backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"}, [128, 256, 512], fpn_channels,
                                   extra_blocks=LastLevelMaxPool())
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = ((32, 64), (96, 128), (192, 256), (384, 512))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return MaskRCNN(
        backbone, num_classes=None, min_size=min_size, max_size=max_size, rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
        box_batch_size_per_image=128, box_head=TwoMLPHead(fpn_channels * 7 * 7, 512), box_predictor=FastRCNNPredictor(512, num_classes),
        mask_head=MaskRCNNHeads(fpn_channels, [128, 128], 1), mask_predictor=MaskRCNNPredictor(128, 128, num_classes),
        box_detections_per_img=100,
    )


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"detector weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in (".pth", ".pt"):
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # anything that is not a plain tensor dict is refused
            raise WeightsError(f"cannot read {path} as a tensor-only state dict: {e}") from e
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        if not isinstance(state, dict):
            raise WeightsError(f"{path} does not hold a state dict")
        return state
    raise WeightsError(f"unsupported detector weights format {path.suffix!r} (use .safetensors, .pth or .pt)")


class TorchvisionMaskRCNN(TaskHead):
    def __init__(self, model: torch.nn.Module, info: HeadInfo, device: str = "cpu", score_thresh: float = 0.05) -> None:
        self.model = model.to(device).eval()
        self.model.roi_heads.score_thresh = score_thresh
        self.info = info
        self.device = device
        self._lock = threading.Lock()

    @contextmanager
    def _mask_branch(self, on: bool):
        """Run the ROI heads with or without the mask branch (boxes do not depend on it). The switch
        is an attribute of the shared model, so calls are serialised by a lock."""
        heads = self.model.roi_heads
        with self._lock:
            saved = heads.mask_roi_pool
            if not on:
                heads.mask_roi_pool = None  # RoIHeads.has_mask() is then False
            try:
                yield
            finally:
                heads.mask_roi_pool = saved

    @torch.no_grad()
    def predict(self, image: np.ndarray, masks: bool = True) -> Instances:
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).to(self.device)
        with self._mask_branch(masks):
            out = self.model([x])[0]
        m = (out["masks"][:, 0] > 0.5).cpu() if "masks" in out else None
        return Instances(tuple(image.shape[:2]), out["boxes"].cpu(), out["scores"].cpu(), out["labels"].cpu(), m)

    def backbone_features(self, x: torch.Tensor) -> "dict[str, torch.Tensor]":
        """The detector's own feature pyramid of images ``x`` (B, 3, H, W) in [0, 1] at their own
        scale (normalised as the detector expects, not resized): what the Omni feature head is
        distilled to, and what feature fidelity is measured against."""
        t = self.model.transform
        mean = torch.tensor(t.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(t.image_std, device=x.device).view(1, 3, 1, 1)
        return self.model.backbone((x - mean) / std)

    @torch.no_grad()
    def predict_features(self, features: "dict[str, torch.Tensor]", image_size: tuple[int, int],
                         masks: bool = True) -> Instances:
        """RPN + ROI heads on a ready feature pyramid (the Omni-ICM feature path: no pixels, no
        backbone). ``features`` are at the image's own scale, level "0" at 1/16 and padded to whole
        64-pixel cells; boxes and masks come back in pixels of ``image_size`` (H, W)."""
        from torchvision.models.detection.image_list import ImageList

        h, w = image_size
        f0 = features["0"]
        padded = (f0.shape[-2] * 16, f0.shape[-1] * 16)
        if padded[0] < h or padded[1] < w or padded[0] % 64 or padded[1] % 64:
            raise ValueError(f"feature level 0 {tuple(f0.shape[-2:])} does not cover a {w}x{h} image in 64-pixel cells")
        feats = {k: v.to(self.device) for k, v in features.items()}
        images = ImageList(torch.empty(1, 3, *padded, device=self.device), [(h, w)])
        proposals, _ = self.model.rpn(images, feats)
        with self._mask_branch(masks):
            det, _ = self.model.roi_heads(feats, proposals, images.image_sizes)
        out = self.model.transform.postprocess(det, images.image_sizes, [(h, w)])[0]
        m = (out["masks"][:, 0] > 0.5).cpu() if "masks" in out else None
        return Instances((h, w), out["boxes"].cpu(), out["scores"].cpu(), out["labels"].cpu(), m)


@register_backend("torchvision")
def torchvision_head(weights: str | None = None, device: str = "cpu", score_thresh: float = 0.05, arch: str | None = None) -> TorchvisionMaskRCNN:
    from ssc.models.zoo import load_state_checked, load_verified

    if not weights:
        raise WeightsError("the torchvision backend needs --det-weights: your COCO-trained Mask R-CNN (.pth, .safetensors) "
                           "or a zoo name; without weights use the default backend, ssdlite-person")
    src = weights
    p = Path(src)
    if p.suffix in (".pth", ".pt") or (p.suffix == ".safetensors" and not p.with_suffix(".json").is_file()):
        state = _read_state(p)
        arch = arch or "maskrcnn_resnet50_fpn"
        cats = [Category(i, str(i)) for i in range(1, NUM_LABEL_SLOTS)]
        info = HeadInfo("torchvision", arch, str(p), cats, "user checkpoint (no model card)")
        model = build_maskrcnn(arch)
    else:
        card, state, digest, wpath = load_verified(src)
        cats = [Category(int(c["id"]), c["name"]) for c in card.config.get("categories", [])]
        info = HeadInfo("torchvision", card.architecture, f"{wpath} (sha256 {digest[:12]})", cats, card.notes)
        model = build_maskrcnn(card.architecture, card.config.get("num_classes", NUM_LABEL_SLOTS),
                               card.config.get("min_size", 800), card.config.get("max_size", 1333))
    load_state_checked(model, state, "detector weights", info.architecture)
    return TorchvisionMaskRCNN(model, info, device, score_thresh)


def categories_from_coco(ann_file: str | Path) -> list[dict]:
    """[{id, name}] of a COCO annotation file, for model cards."""
    return [{"id": int(c["id"]), "name": c["name"]} for c in json.loads(Path(ann_file).read_text())["categories"]]
