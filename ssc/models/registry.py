"""Architecture registry (timm-style decorator). Names are stable identifiers written into
bitstreams; they never depend on registration order."""
from __future__ import annotations

from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
#: architectures defined in a higher layer, registered when first asked for (by importing their module)
_LAZY: dict[str, str] = {"gi-omni": "ssc.omni.codec"}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def create_model(name: str, **cfg) -> nn.Module:
    if name not in _MODELS and name in _LAZY:
        import importlib

        importlib.import_module(_LAZY[name])
    try:
        fn = _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(list_models())}") from None
    return fn(**cfg)


def list_models() -> list[str]:
    return sorted({*_MODELS, *_LAZY})
