"""Machine-task heads on (partially) decoded images (installed as ``ssc.tasks``)."""
from .structures import Instances

__all__ = ["Instances"]
