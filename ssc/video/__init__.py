"""SSVC: semantically structured video. Per-track intra / inter coding (:mod:`.codec`), the ``.ssv``
container (:mod:`.format`), random access (:mod:`.stream`), rate control (:mod:`.ratecontrol`) and
video I/O (:mod:`.io`)."""
from .codec import DecodedFrame, FrameStats, VideoDecoder, VideoEncoder, VideoSummary, decode_video
from .format import VideoHeader
from .ratecontrol import RateControl
from .stream import VideoReader

__all__ = ["DecodedFrame", "FrameStats", "RateControl", "VideoDecoder", "VideoEncoder", "VideoHeader",
           "VideoReader", "VideoSummary", "decode_video"]
