"""Architecture registry (timm-style decorator). Names are stable identifiers written into
bitstreams; they never depend on registration order."""
from __future__ import annotations

from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def create_model(name: str, **cfg) -> nn.Module:
    try:
        fn = _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(_MODELS))}") from None
    return fn(**cfg)


def list_models() -> list[str]:
    return sorted(_MODELS)
