"""Task-head backend ``blazepose``: person keypoints and person masks, top-down on the person
detector's boxes (BlazePose GHUM, Bazarevsky et al., "BlazePose: On-device Real-time Body Pose
tracking", CVPR-W 2020).

The network is ``pose_landmark_full.tflite`` from the PyPI wheel ``mediapipe==0.10.21`` (Apache-2.0;
installed with ``--no-deps``, only its model files are read: later versions no longer ship it), run
by the LiteRT runtime (``ai-edge-litert``), the runtime the reference outputs in
``shared/data/reference/mediapipe_person_reference.json`` were made with: bit-exact with the
reference. Training a codec against the heads needs gradients, so the same file also runs in PyTorch
(:mod:`ssc.tasks.tflite_torch`, the graph executed op by op with the file's weights; 0.003 input
pixels from LiteRT), which :mod:`ssc.pose_loss` uses.

Per person box (score >= ``box_score``): a square crop centred on the box, of side 1.25 x its longer
side, zeros outside the image, resized to 256 x 256 (bilinear); the network gives 39 landmarks
(x, y, z, visibility, presence) in input pixels and a 256 x 256 person-mask logit map. COCO's 17
keypoints are landmarks :data:`COCO_FROM_BLAZEPOSE`; the mask is the sigmoid of the logit map as
8-bit, resized to the crop (bilinear) and taken above one half. Every result's score is its box's.
"""
from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssc.errors import WeightsError

from .heads import DEFAULT_BACKEND, Category, HeadInfo, TaskHead, register_backend, shared_head
from .structures import Instances

PERSON = Category(1, "person")
INPUT = 256
#: crop side over the box's longer side
CROP_SCALE = 1.25
#: BlazePose landmark of each COCO keypoint (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
COCO_FROM_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
POSE_MODEL = "modules/pose_landmark/pose_landmark_full.tflite"
SELFIE_MODEL = "modules/selfie_segmentation/selfie_segmentation.tflite"
INSTALL = "pip install --no-deps mediapipe==0.10.21 ai-edge-litert==2.3.0 (or make install)"


def mediapipe_file(rel: str) -> Path:
    """A model file of the installed mediapipe wheel (the package is located, never imported: it
    needs numpy < 2 and OpenCV)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise WeightsError(f"the blazepose head needs the mediapipe 0.10.21 wheel's model files: {INSTALL}")
    path = Path(spec.origin).parent / rel
    if not path.is_file():
        raise WeightsError(f"{path} is missing: the installed mediapipe is not 0.10.21 ({INSTALL})")
    return path


class LiteRTModel:
    """One .tflite network on the LiteRT CPU runtime; ``run`` is serialised per instance (an
    interpreter is not reentrant)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise WeightsError(f"the blazepose head needs the LiteRT runtime: {INSTALL}") from e
        self.path = path
        self._it = Interpreter(model_path=str(path), num_threads=threads or torch.get_num_threads())
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]["index"]
        self._out = {d["name"]: d["index"] for d in self._it.get_output_details()}
        self._lock = threading.Lock()

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for one (1, H, W, 3) float32 input."""
        with self._lock:
            self._it.set_tensor(self._in, np.ascontiguousarray(x, dtype=np.float32))
            self._it.invoke()
            return {k: self._it.get_tensor(i).copy() for k, i in self._out.items()}


@dataclass(frozen=True)
class Crop:
    """A square crop in image pixels: left, top, side."""

    left: int
    top: int
    side: int

    @classmethod
    def around(cls, box: tuple[float, float, float, float]) -> "Crop":
        """The reference rule: centre = the box centre, side = 1.25 x the box's longer side."""
        x0, y0, x1, y1 = box
        side = CROP_SCALE * max(x1 - x0, y1 - y0)
        return cls(round((x0 + x1) / 2 - side / 2), round((y0 + y1) / 2 - side / 2), max(round(side), 1))

    def cut(self, image: np.ndarray) -> np.ndarray:
        """The crop of an (H, W, 3) image, zeros outside it."""
        h, w = image.shape[:2]
        out = np.zeros((self.side, self.side, 3), dtype=image.dtype)
        ax0, ay0 = max(self.left, 0), max(self.top, 0)
        ax1, ay1 = min(self.left + self.side, w), min(self.top + self.side, h)
        if ax1 > ax0 and ay1 > ay0:
            out[ay0 - self.top : ay1 - self.top, ax0 - self.left : ax1 - self.left] = image[ay0:ay1, ax0:ax1]
        return out

    def paste(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A (side, side) mask placed into an image of ``shape``, cut at its edges."""
        h, w = shape
        out = np.zeros((h, w), dtype=bool)
        ax0, ay0 = max(self.left, 0), max(self.top, 0)
        ax1, ay1 = min(self.left + self.side, w), min(self.top + self.side, h)
        if ax1 > ax0 and ay1 > ay0:
            out[ay0:ay1, ax0:ax1] = mask[ay0 - self.top : ay1 - self.top, ax0 - self.left : ax1 - self.left]
        return out


def network_input(image: np.ndarray, crop: Crop) -> np.ndarray:
    """(1, 256, 256, 3) float32 in [0, 1]: the crop resized with PIL's bilinear filter."""
    im = Image.fromarray(crop.cut(image)).resize((INPUT, INPUT), Image.BILINEAR)
    return (np.asarray(im, dtype=np.float32) / 255.0)[None]


@dataclass
class PoseResult:
    """One person: the raw 39 x 5 landmarks (input pixels), COCO keypoints (17, 3) in image pixels
    (visibility 2), and the person mask in image pixels (None when not asked for)."""

    landmarks: np.ndarray
    keypoints: np.ndarray
    mask: np.ndarray | None


class TorchModel:
    """The same .tflite network run by PyTorch (:class:`ssc.tasks.tflite_torch.TFLiteGraph`), with
    :class:`LiteRTModel`'s ``run``: what the pose loss trains against, checked against the reference."""

    def __init__(self, path: Path) -> None:
        from .tflite_torch import TFLiteGraph

        self.net = TFLiteGraph(path).eval()

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {k: v.numpy() for k, v in self.net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).items()}


#: the runtimes that run the network: LiteRT (the heads' default, bit-exact with the reference) or PyTorch
RUNTIMES = ("litert", "torch")


class BlazePose:
    """BlazePose on given person boxes (the network alone; :class:`BlazePoseHead` adds the detector)."""

    def __init__(self, threads: int | None = None, runtime: str = "litert") -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown BlazePose runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
        path = mediapipe_file(POSE_MODEL)
        self.model = LiteRTModel(path, threads) if runtime == "litert" else TorchModel(path)

    def on_box(self, image: np.ndarray, box: tuple[float, float, float, float], masks: bool = True) -> PoseResult:
        crop = Crop.around(box)
        out = self.model.run(network_input(image, crop))
        lm = out["Identity"].reshape(39, 5)
        scale = crop.side / INPUT
        kp = np.zeros((len(COCO_FROM_BLAZEPOSE), 3), dtype=np.float64)
        kp[:, 0] = crop.left + lm[list(COCO_FROM_BLAZEPOSE), 0] * scale
        kp[:, 1] = crop.top + lm[list(COCO_FROM_BLAZEPOSE), 1] * scale
        kp[:, 2] = 2
        mask = None
        if masks:
            with np.errstate(over="ignore"):
                prob = 1.0 / (1.0 + np.exp(-out["Identity_2"][0, :, :, 0]))
            fg = Image.fromarray((prob * 255).astype(np.uint8)).resize((crop.side, crop.side), Image.BILINEAR)
            m = np.asarray(fg) > 127
            mask = crop.paste(m, image.shape[:2])
        return PoseResult(lm, kp, mask)


class BlazePoseHead(TaskHead):
    """Keypoints and person masks: the person detector's boxes (score >= ``box_score``), then
    BlazePose on each. ``predict`` fills ``Instances.keypoints`` (N, 17, 3) and ``masks``."""

    def __init__(self, device: str = "cpu", box_score: float = 0.3, detector: TaskHead | None = None,
                 threads: int | None = None) -> None:
        self.detector = detector or shared_head(DEFAULT_BACKEND, None, device, None)
        self.box_score = box_score
        self.pose = BlazePose(threads)
        self.info = HeadInfo(
            backend="blazepose", architecture="BlazePose GHUM full (pose_landmark_full.tflite)",
            weights=f"mediapipe 0.10.21 {POSE_MODEL}", categories=[PERSON],
            notes=f"top-down on {self.detector.info.backend} boxes with score >= {box_score}; LiteRT runtime",
            masks=True,
        )

    def predict(self, image: np.ndarray, masks: bool = True) -> Instances:
        return self.predict_on(image, self.detector.predict(image, masks=False), masks)

    def predict_on(self, image: np.ndarray, det: Instances, masks: bool = True) -> Instances:
        """Keypoints and masks of the persons among detections ``det`` already made on ``image``."""
        det = det[(det.scores >= self.box_score) & (det.classes == PERSON.id)]
        h, w = image.shape[:2]
        res = [self.pose.on_box(image, tuple(float(v) for v in b), masks) for b in det.boxes]
        kps = torch.from_numpy(np.stack([r.keypoints for r in res])) if res else torch.zeros(0, 17, 3, dtype=torch.float64)
        ms = None
        if masks:
            ms = torch.from_numpy(np.stack([r.mask for r in res])) if res else torch.zeros(0, h, w, dtype=torch.bool)
        return Instances((h, w), det.boxes, det.scores, torch.ones(len(det), dtype=torch.long), ms, kps)


@register_backend("blazepose")
def build_blazepose(weights: str | None = None, device: str = "cpu", score_thresh: float | None = None,
                    **kw) -> BlazePoseHead:
    """The BlazePose head; ``score_thresh`` is the person boxes' threshold (default 0.3, the reference's)."""
    if weights:
        raise WeightsError("the blazepose head takes no weights (it reads the mediapipe wheel's model)")
    return BlazePoseHead(device=device, box_score=0.3 if score_thresh is None else score_thresh, **kw)
