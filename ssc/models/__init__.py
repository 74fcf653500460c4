"""Learned codecs. Importing this package registers the architectures."""
from .codec import ALIGN, CodecOutput, GroupCodec
from .hyperprior import ScaleHyperprior
from .registry import create_model, list_models, register_model

__all__ = ["ALIGN", "CodecOutput", "GroupCodec", "ScaleHyperprior", "create_model", "list_models", "register_model"]

# architectures defined outside ssc.models register themselves on import
from ..omni import codec as _omni_codec  # noqa: E402,F401  (gi-omni)
