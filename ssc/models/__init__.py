"""Learned codecs. Importing this package registers the architectures."""
from .codec import ALIGN, CodecOutput, GroupCodec
from .registry import create_model, list_models, register_model

__all__ = ["ALIGN", "CodecOutput", "GroupCodec", "create_model", "list_models", "register_model"]
