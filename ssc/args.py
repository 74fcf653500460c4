"""Argument groups shared by the commands (``ssc``), the batch commands and the benchmark scripts
(``ssc.eval``): where jobs run and which task head reads the images. Pure argparse, no imports of
either side."""
from __future__ import annotations

import argparse

#: exit statuses of every command: an error, some groups/jobs failed (the rest written), Ctrl-C
EXIT_ERROR = 1
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


def executor_args(sp: argparse.ArgumentParser, threads: int = 1) -> None:
    """Where jobs run (shared by ``ssc batch`` and ``ssc eval coco``)."""
    g = sp.add_argument_group("execution")
    g.add_argument("--ray", action="store_true", help="run the jobs as Ray tasks (starts a local Ray cluster "
                   "unless --address is given; needs the ray extra)")
    g.add_argument("--address", default=None, help="join a running Ray cluster (auto, ray://HOST:10001); implies --ray")
    g.add_argument("--workers", type=int, default=None, help="Ray: jobs in flight at once (default: cluster CPUs / threads)")
    g.add_argument("--threads", type=int, default=threads,
                   help=f"torch threads per job (default {threads}); results are identical between runs with equal --threads")


def detector_args(sp: argparse.ArgumentParser, score_default: float | None = None) -> None:
    """Which task head reads the images (shared by ``ssc analyze``, ``ssc batch analyze`` and ``ssc
    eval coco``). The default is ssc.tasks.DEFAULT_BACKEND, the pretrained person detector."""
    sp.add_argument("--backend", default=None,
                    help="task backend: ssdlite-person (the default: the pretrained person detector, boxes only), "
                         "blazepose (person keypoints and masks on its boxes; the default of --task pose and "
                         "segment), torchvision (Mask R-CNN with your --det-weights; the default when they are "
                         "given) or detectron2 (when installed)")
    sp.add_argument("--det-weights", default=None,
                    help="torchvision/detectron2: zoo name, .safetensors with card, or your own COCO checkpoint (.pth/.pkl)")
    sp.add_argument("--score-thresh", type=float, default=score_default,
                    help="drop detections below this score (default: the backend's own)")


def force_arg(sp: argparse.ArgumentParser) -> None:
    """``--force`` / ``-y``: overwrite existing outputs (refused otherwise)."""
    sp.add_argument("-y", "--force", action="store_true", help="overwrite existing outputs")
