"""Safe outputs: nothing ssc writes ever sits half-written under its final name.

Every file goes to a temporary name beside it (same folder, same suffix, so format detection by
extension still works) and is renamed over the final name only when complete; an error or Ctrl-C
removes the temporary file. An existing output is refused unless the caller allows overwriting
(``--force`` / ``-y`` on the command line).
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import SSCError


class OutputExistsError(SSCError):
    """The output exists and overwriting was not allowed."""


def check_new(path: str | Path, force: bool = False) -> Path:
    """``path`` as a Path, refusing an existing file (or non-empty folder) unless ``force``."""
    p = Path(path)
    exists = p.is_file() or (p.is_dir() and any(p.iterdir()))
    if exists and not force:
        raise OutputExistsError(f"{p} exists; pass --force (-y) to overwrite it")
    return p


def temp_beside(path: str | Path) -> Path:
    """A temporary name next to ``path`` with its suffix (``.name.part-PID.ext``)."""
    p = Path(path)
    return p.with_name(f".{p.stem}.part-{os.getpid()}{p.suffix}")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any exception (Ctrl-C
    included) it is removed and the exception propagates."""
    p = Path(path)
    if p.parent != Path("."):
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(p)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, p)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def save_image(path: str | Path, image: np.ndarray) -> None:
    """An (H, W[, 3]) uint8 array as an image file (format from the suffix)."""
    from PIL import Image

    with atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp)


@contextmanager
def interrupt_between() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back while the block runs and raise KeyboardInterrupt when it ends: a loop
    body wrapped in it is interrupted between iterations, never inside one (for example inside a
    compiler writing its cache, which fails with its own error instead). A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught and callable(old):  # what the handler before would have done (default: KeyboardInterrupt)
        old(signal.SIGINT, None)


def run_meta(**extra) -> dict:
    """Machine and library facts every results JSON carries, plus the script's own settings."""
    import platform

    import torch

    meta = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    meta.update(extra)
    return meta
