"""Group-map providers (COCO annotations, PNG label maps, binary masks) and grouping policies."""
from .binary import from_binary_masks
from .coco import from_coco
from .groupmap import GroupInfo, GroupMap, paint_instances
from .policies import apply_policy, merge_small, objects_vs_background, per_class, per_instance
from .png import from_png, save_png
from .segment import kmeans_groups
from .source import load_masks

__all__ = [
    "GroupInfo", "GroupMap", "apply_policy", "from_binary_masks", "from_coco", "from_png", "kmeans_groups",
    "load_masks", "merge_small", "objects_vs_background", "paint_instances", "per_class",
    "per_instance", "save_png",
]
