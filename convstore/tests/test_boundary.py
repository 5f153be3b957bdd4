"""The library stands alone: it imports nothing of Django, Celery or the project that uses it,
and its modules import one another one way only."""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "src" / "convstore"
FORBIDDEN = {"django", "django_redis", "celery", "sessions_app", "phonemes", "robotperf", "locks"}


def imports(path):
    """The top-level modules and the convstore modules that ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "convstore":
                found.update(f"convstore.{alias.name}" for alias in node.names)
    return found


def modules():
    return {path.stem: path for path in SOURCE.glob("*.py") if path.stem != "__init__"}


def test_nothing_of_django_celery_or_the_project_is_imported():
    for path in SOURCE.rglob("*.py"):
        used = {name.split(".")[0] for name in imports(path)}
        assert not used & FORBIDDEN, f"{path.name} imports {used & FORBIDDEN}"


def test_the_modules_import_one_another_one_way():
    graph = {
        name: {m.split(".")[1] for m in imports(path) if m.startswith("convstore.")}
        for name, path in modules().items()
    }

    def reaches(start, target, seen=()):
        return any(
            nxt == target or (nxt not in seen and reaches(nxt, target, (*seen, nxt)))
            for nxt in graph.get(start, ())
        )

    circles = sorted(name for name in graph if reaches(name, name))
    assert circles == []
