"""Learned codecs. Importing this package registers its architectures; those of higher layers
(gi-omni) register when first created (:mod:`ssc.models.registry`)."""
from .codec import ALIGN, CodecOutput, GroupCodec
from .hyperprior import ScaleHyperprior
from .registry import create_model, list_models, register_model

__all__ = ["ALIGN", "CodecOutput", "GroupCodec", "ScaleHyperprior", "create_model", "list_models", "register_model"]
