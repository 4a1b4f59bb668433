"""The package's shape: one import name, every source folder in the wheel's package list, a public
API with docstrings, and docs and examples that use nothing else. (The built wheel itself is
installed and run in tests/integration/test_packaging.py.)"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import aribot

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_one_import_name_mapped_onto_the_design_folders() -> None:
    assert SETUPTOOLS["package-dir"] == {"aribot": "aribot", "aribot.core": "core", "aribot.plugins": "plugins",
                                         "aribot.sandbox": "sandbox"}
    assert {name.split(".")[0] for name in SETUPTOOLS["packages"]} == {"aribot"}


def test_every_source_folder_is_a_listed_package() -> None:
    """A new folder with an __init__.py that is not in [tool.setuptools] packages would be missing
    from the wheel (the editable install would hide it)."""
    found = set()
    for top, name in (("aribot", "aribot"), ("core", "aribot.core"), ("plugins", "aribot.plugins"),
                      ("sandbox", "aribot.sandbox")):
        for init in (REPO / top).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / top)
            found.add(".".join([name, *rel.parts]))
    assert found == set(SETUPTOOLS["packages"])


def test_version_has_one_source() -> None:
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "aribot.__version__"}
    from importlib.metadata import version
    assert version("aribot") == aribot.__version__
    out = subprocess.run([sys.executable, "-m", "aribot", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"aribot {aribot.__version__}"


def test_public_api_resolves_and_is_documented() -> None:
    for name in aribot.__all__:
        value = getattr(aribot, name)
        if name != "__version__":
            assert (getattr(value, "__doc__", None) or "").strip(), f"aribot.{name} has no docstring"
    assert sorted(aribot.__all__) == dir(aribot)
    assert set(aribot.__all__) == {"__version__", "hookimpl", *aribot._LAZY}
    assert set(aribot.event_types().values()) <= {getattr(aribot, n) for n in aribot.__all__}


def test_import_aribot_is_cheap() -> None:
    """`import aribot` (every CLI run, every plugin) loads no adapter, NiceGUI or dynaconf."""
    code = "import sys, aribot; print(sorted(m for m in sys.modules if m.startswith(('aribot.', 'nicegui', 'dynaconf'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['aribot.core', 'aribot.core.hookspecs']"


def python_in(path: Path) -> str:
    """The Python code of a .py file, or of the ```python blocks of a Markdown file."""
    text = path.read_text()
    return text if path.suffix == ".py" else "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))


def test_docs_and_examples_use_only_the_public_api() -> None:
    files = [REPO / "docs" / "plugins.md", REPO / "docs" / "tools.md", REPO / "docs" / "backends.md",
             *(REPO / "examples").rglob("*.py")]
    for path in files:
        code = python_in(path)
        assert code.strip(), f"{path} has no code"
        for line in code.splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and "aribot" in stripped:
                assert stripped in ("import aribot",) or stripped.startswith("from aribot import "), (
                    f"{path.relative_to(REPO)}: {stripped!r} reaches past the public API")
        for name in re.findall(r"\baribot\.(\w+)", code):
            assert name in aribot.__all__, f"{path.relative_to(REPO)} uses aribot.{name}, which is not public"


def test_core_imports_no_plugin_and_no_sandbox() -> None:
    """core/ names no plugin module and no sandbox module (the CLI's `lab` and `demo` commands
    import the sandbox when they run)."""
    for path in (REPO / "core").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert "aribot.plugins" not in stripped, f"{path.relative_to(REPO)}: {stripped}"
                if path.name != "cli.py":
                    assert "aribot.sandbox" not in stripped, f"{path.relative_to(REPO)}: {stripped}"


def test_sandbox_is_its_own_subpackage() -> None:
    assert importlib.import_module("aribot.sandbox.asterisk").__file__.startswith(str(REPO / "sandbox"))
    assert not (REPO / "core" / "lab").exists() and not (REPO / "core" / "demo.py").exists()


def openai_event_names() -> set[str]:
    """Every event type of the OpenAI Realtime and GPT-Live protocols, from the SDK's models."""
    import typing

    from openai.types import live, realtime

    names: set[str] = set()
    for union in (realtime.RealtimeClientEvent, realtime.RealtimeServerEvent, live.ClientEvent, live.ServerEvent):
        for model in typing.get_args(typing.get_args(union)[0] if hasattr(union, "__metadata__") else union):
            field = getattr(model, "model_fields", {}).get("type")
            names.update(typing.get_args(field.annotation) if field is not None else ())
    return names


def test_core_knows_no_openai_event() -> None:
    """Vendor protocols live in their backend plugins: core's source names no event of either."""
    names = {name for name in openai_event_names() if "." in name}  # a bare "error" is plain English
    assert {"session.update", "input_audio_buffer.append", "session.start", "response.create"} <= names
    for path in (REPO / "core").rglob("*.py"):
        text = path.read_text()
        found = sorted(name for name in names if f'"{name}"' in text or f"'{name}'" in text or f" {name} " in text)
        assert not found, f"{path.relative_to(REPO)} names OpenAI events {found}"


def core_import_graph() -> dict[str, set[str]]:
    """core module → the core modules it imports when loaded (not under TYPE_CHECKING, not in a function)."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in (REPO / "core").glob("*.py"):
        deps: set[str] = set()
        pending = list(ast.parse(path.read_text()).body)
        while pending:
            node = pending.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                pending.extend(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aribot.core"):
                parts = node.module.split(".")
                deps |= {parts[2]} if len(parts) > 2 else {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                deps |= {alias.name.split(".")[2] for alias in node.names if alias.name.startswith("aribot.core.")}
            pending.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))
        graph[path.stem] = deps - {path.stem}
    return graph


def test_core_modules_import_each_other_without_a_circle() -> None:
    """The call and its speech backend once imported each other; core stays a tree of imports."""
    graph = core_import_graph()
    assert {"call", "backend", "conversation"} <= set(graph) and "backend" in graph["conversation"]
    assert "call" not in graph["backend"] and "call" not in graph["conversation"]

    def visit(node: str, path: tuple[str, ...]) -> None:
        for dep in graph.get(node, ()):
            assert dep not in path, f"import circle: {' -> '.join(path + (dep,))}"
            visit(dep, path + (dep,))

    for module in graph:
        visit(module, (module,))
