"""Shared output helpers of the benchmark scripts: one JSON, one markdown table, run metadata."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def run_meta(**extra) -> dict:
    """Machine and library facts every results JSON carries, plus the script's own settings."""
    meta = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    meta.update(extra)
    return meta


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "n/a" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]


def write_outputs(out: str | Path, stem: str, data: dict, lines: list[str]) -> Path:
    """``out/stem.json`` and ``out/stem.md``; prints the table. Returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1))
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def subplots(*args, **kw):
    """``plt.subplots`` on the file-only Agg backend (matplotlib is imported lazily: it is an extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kw)


def style_axis(ax, xlabel: str, ylabel: str, title: str | None = None, legend_size: int | None = 8) -> None:
    """Labels, a light grid and (when anything is labelled) a legend: the look every eval plot shares."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size)


def save_figure(fig, path: str | Path) -> None:
    """Lay out, write (120 dpi) and close a figure made by :func:`subplots`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
