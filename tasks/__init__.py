"""Machine-task heads on (partially) decoded images (installed as ``ssc.tasks``): one interface
(:class:`TaskHead`), torchvision Mask R-CNN by default, detectron2 when installed, and COCO result
conversion."""
from .heads import (DEFAULT_BACKEND, WEIGHTS_BACKEND, Category, HeadInfo, TaskHead, build_head, list_backends,
                    register_backend, resolve_head)
from .structures import Instances

__all__ = ["DEFAULT_BACKEND", "WEIGHTS_BACKEND", "Category", "HeadInfo", "Instances", "TaskHead", "build_head",
           "list_backends", "register_backend", "resolve_head"]
