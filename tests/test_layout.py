"""The package's folders are layers: a module imports only from its own folder and the folders
below it (the order below, which the README's layout lists), so the model never depends on the
data loaders' callers, nor the inference path on the run machinery. Every import counts, also
one inside a function."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "common"
LAYERS = ["constants", "geometry", "storage", "datasets", "model", "inference", "uncertainty", "evaluation",
          "outputs", "in_the_wild", "run", "api", "cli"]
MAX_LINES = 400


def _part(module: list[str]) -> str:
    """The layer of a module path inside the package (['model', 'denoiser'] -> 'model')."""
    return "api" if module[:1] == ["api"] else module[0] if module else "(package)"


def _imports(path: Path):
    """(line, imported module path inside the package) of every relative import of a file."""
    here = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if node.module:
                yield node.lineno, target
            else:                                          # from . import x, y: each name is a module
                for alias in node.names:
                    yield node.lineno, target + [alias.name]


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = list(path.relative_to(PACKAGE).with_suffix("").parts)
        own = _part(module)
        if own not in LAYERS:                              # the package's __init__ (lazy exports) sits on top
            continue
        for line, target in _imports(path):
            part = _part(target)
            assert part in LAYERS, f"{path}:{line} imports {'.'.join(target)}, which is in no layer: add it to LAYERS"
            if LAYERS.index(part) > LAYERS.index(own):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({own}) imports {'.'.join(target)} ({part})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_every_folder_is_a_layer_and_every_top_module_is_placed():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert folders | modules == set(LAYERS)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by idea: {long}"
