"""The project's modules import each other without a circle (a module that imports one that imports it back
cannot be read, tested or replaced on its own)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The one lazy import back: BaseDataLoader makes a loader written before ImageDataLoader (mean and std on a plain
# BaseDataLoader) an ImageDataLoader, so that projects updated from then keep training.
ALLOWED = {frozenset({"base.base_data_loader", "base.image_data_loader"})}


def module_imports() -> dict[str, set[str]]:
    """Each module of the project (tests aside) -> the project's modules it imports, anywhere in it."""
    paths = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] not in ("tests", ".venv")}  # fmt: skip
    graph = {}
    for name, path in paths.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        graph[name] = {other for other in imported if other in paths and other != name}
    return graph


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = module_imports()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(step == goal or (step not in seen and reaches(step, goal, seen | {step})) for step in graph[start])

    circles = {frozenset({a, b}) for a in graph for b in graph[a] if reaches(b, a, {b})}
    assert {circle for circle in circles if not circle <= set().union(*ALLOWED)} == set(), circles
