"""Shared output helpers of the benchmark scripts: one JSON, one markdown table, run metadata."""
from __future__ import annotations

import json
from pathlib import Path

from ssc.outputs import run_meta  # noqa: F401  (the benchmarks' import path)


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
