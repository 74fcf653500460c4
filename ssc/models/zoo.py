"""Trained weights: safetensors files with a JSON model card beside them. A card records the
architecture, its config, the SHA-256 of the weights file and how they were made; a weights file
whose hash does not match its card is refused. Nothing is ever unpickled."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import WeightsError
from .registry import create_model

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
UNREGISTERED_ID = b"\x00" * 8


@dataclass
class ModelCard:
    name: str
    architecture: str
    config: dict
    sha256: str = ""
    lambdas: list[float] = field(default_factory=list)
    training: dict = field(default_factory=dict)
    notes: str = ""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "ModelCard":
        try:
            raw = json.loads(path.read_text())
            return cls(**raw)
        except (OSError, ValueError, TypeError) as e:
            raise WeightsError(f"bad model card {path}: {e}") from e


@dataclass
class LoadedCodec:
    model: torch.nn.Module
    card: ModelCard
    weights_id: bytes  # first 8 bytes of the weights' SHA-256, written into streams


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("SSC_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["SSC_WEIGHTS_DIR"]))
    dirs.append(WEIGHTS_DIR)
    return dirs


def available() -> list[str]:
    """Names of the model cards found in the weights directories."""
    names = set()
    for d in search_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.json") if p.with_suffix(".safetensors").is_file())
    return sorted(names)


def resolve(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights path, card path) for a zoo name or a path to a .safetensors file."""
    p = Path(name_or_path)
    if p.suffix == ".safetensors":
        if not p.is_file():
            raise WeightsError(f"weights file not found: {p}")
        card = p.with_suffix(".json")
        if not card.is_file():
            raise WeightsError(f"weights {p} have no model card ({card.name}) beside them")
        return p, card
    for d in search_dirs():
        w, c = d / f"{name_or_path}.safetensors", d / f"{name_or_path}.json"
        if w.is_file() and c.is_file():
            return w, c
    looked = ", ".join(str(d) for d in search_dirs())
    have = ", ".join(available()) or "none"
    raise WeightsError(
        f"no trained weights for model {str(name_or_path)!r} (looked in {looked}; available: {have}). "
        "Train them with `ssc train --config ...` or pass --weights PATH.safetensors"
    )


def load_verified(name_or_path: str | os.PathLike) -> tuple[ModelCard, dict[str, torch.Tensor], str, Path]:
    """(card, state dict, sha256, weights path) of a zoo entry or a .safetensors path, refusing
    weights whose hash does not match their model card. Used for codecs and task heads alike."""
    wpath, cpath = resolve(name_or_path)
    card = ModelCard.load(cpath)
    digest = sha256_file(wpath)
    if card.sha256 and digest != card.sha256:
        raise WeightsError(f"weights {wpath} do not match their model card (sha256 {digest[:16]}..., card says {card.sha256[:16]}...)")
    if not card.sha256:
        raise WeightsError(f"model card {cpath} carries no sha256; refusing unverified weights")
    try:
        state = load_file(str(wpath))
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise WeightsError(f"cannot read weights {wpath}: {e}") from e
    return card, state, digest, wpath


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str, architecture: str) -> None:
    """Load ``state`` into ``model`` (cast to the model's dtypes, e.g. from fp16), refusing missing,
    unexpected or wrongly shaped tensors with a :class:`WeightsError`."""
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise WeightsError(f"{what} do not fit {architecture}: {str(e).splitlines()[-1].strip()}") from e
    if missing or unexpected:
        raise WeightsError(f"{what} do not fit {architecture}: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_codec(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedCodec:
    """Load a trained codec, verifying the weights against the SHA-256 in their model card."""
    card, state, digest, wpath = load_verified(name_or_path)
    model = create_model(card.architecture, **card.config)
    load_state_checked(model, state, f"weights {wpath}", card.architecture)
    model.to(device).eval()
    return LoadedCodec(model, card, bytes.fromhex(digest[:16]))


def export_weights(model: torch.nn.Module, card: ModelCard, path: Path, half: bool = True) -> ModelCard:
    """Write ``model`` as safetensors (floating tensors as fp16 when ``half``; integer tables and the
    float64 scale table untouched) plus its card with the file's SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.dtype == torch.float32:
            v = v.half()
        state[k] = v
    save_file(state, str(path), metadata={"name": card.name, "architecture": card.architecture})
    card.sha256 = sha256_file(path)
    card.save(path.with_suffix(".json"))
    return card
