"""The package's layers: imports inside `smar/` run one way, from the pipeline down to the data.

A lower layer never imports a higher one, not even inside a function, so each layer can be
read, tested and changed knowing only the layers below it (docs/ARCHITECTURE.md).
"""

import ast
from pathlib import Path

SMAR = Path(__file__).resolve().parents[2] / "smar"
LAYERS = [  # lowest first; a module may import its own layer and the ones before it
    ("core",),
    ("data",),
    ("traffic",),
    ("model",),
    ("features",),
    ("training",),
    ("retrieval",),
    ("evaluation",),
    ("registry",),
    ("serving",),
    ("pipeline",),
    ("cli", "__main__", "__init__"),
]


def layer_of(module: str) -> int:
    """The layer of `smar.<module>` (the longest matching prefix decides: core.contract is a foundation)."""
    matches = [
        (len(prefix), number)
        for number, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"smar.{module} belongs to no layer: add it to LAYERS"
    return max(matches)[1]


def imported_smar_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smar"):
            base = node.module.removeprefix("smar").lstrip(".")
            modules |= (
                {f"{base}.{alias.name}".strip(".") for alias in node.names}
                if base in ("", "data", "model", "pipeline")
                else {base}
            )
        elif isinstance(node, ast.Import):
            modules |= {alias.name.removeprefix("smar.") for alias in node.names if alias.name.startswith("smar.")}
    return modules


def test_imports_run_downward_only():
    upward = []
    for path in sorted(SMAR.rglob("*.py")):
        module = (
            path.relative_to(SMAR).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__") or "__init__"
        )
        for imported in imported_smar_modules(path):
            if imported and layer_of(imported) > layer_of(module):
                upward.append(f"smar.{module} imports smar.{imported}")
    assert not upward, "\n".join(upward)


def test_every_module_has_a_layer():
    for path in SMAR.rglob("*.py"):
        layer_of(path.relative_to(SMAR).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__"))
