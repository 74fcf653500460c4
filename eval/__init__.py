"""Evaluation: metrics, anchors and benchmarks (installed as ``ssc.eval``)."""
from ssc.metrics import bpp, mse, psnr

__all__ = ["bpp", "mse", "psnr"]
