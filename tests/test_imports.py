"""The import graph runs one way: a module imports only its own layer and the layers below, read
from every top-level and function-level import; the wire layer loads without torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: ssc's units from the bottom up; a unit may import its own layer and any layer below it.
#: Registries name higher modules only as strings (models.registry, train's trainers), not imports.
LAYERS = [
    {"errors", "defaults", "purpose", "fill", "outputs", "parallel", "args", "metrics", "distributed"},
    {"bitstream"},
    {"models"},
    {"tasks"},
    {"masks"},
    {"crop", "decode", "encode", "api"},
    {"data", "task_loss", "pose_loss", "train"},
    {"train_detector", "omni"},
    {"video", "analyze"},
    {"batch", "demo", "gpu_recipe"},
    {"batch_cli", "cli", "__init__", "__main__"},
    {"eval"},
]
RANK = {u: i for i, layer in enumerate(LAYERS) for u in layer}
FOLDERS = {"ssc": ROOT / "ssc", "masks": ROOT / "masks", "tasks": ROOT / "tasks", "eval": ROOT / "eval"}


def _unit_of_file(folder: str, path: Path) -> tuple[str, list[str]]:
    """(unit, the module's package path inside ssc) of a source file."""
    rel = list(path.relative_to(FOLDERS[folder]).with_suffix("").parts)
    pkg = ["ssc"] + ([folder] if folder != "ssc" else []) + rel[:-1]
    unit = folder if folder != "ssc" else (rel[0] if len(rel) > 1 else rel[0])
    return unit, pkg


def _imported_units(path: Path, pkg: list[str]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                names = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            parts = n.split(".")
            if parts[0] == "ssc" and len(parts) > 1:
                out.add(parts[1])
    return out


def test_no_module_imports_a_higher_layer():
    wrong = []
    for folder, base in FOLDERS.items():
        for path in sorted(base.rglob("*.py")):
            unit, pkg = _unit_of_file(folder, path)
            assert unit in RANK, f"{path}: unit {unit!r} has no layer in tests/test_imports.py"
            for used in _imported_units(path, pkg):
                if used in RANK and RANK[used] > RANK[unit]:
                    wrong.append(f"{path.relative_to(ROOT)} ({unit}) imports ssc.{used}")
    assert not wrong, "\n".join(wrong)


def test_the_wire_layer_loads_without_torch():
    code = "import sys, ssc.bitstream; print('torch' in sys.modules, any(m.startswith('ssc.omni') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_models_do_not_load_the_omni_codec_until_asked():
    code = ("import sys, ssc.models as m; a = any(k.startswith('ssc.omni') for k in sys.modules); "
            "print(a, 'gi-omni' in m.list_models())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
