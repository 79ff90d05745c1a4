"""The Python examples (examples/python/) for the unit tests that run their workers in-process.

The examples are scripts, not a package: a test imports one by its path with
load_example, once, and then uses its worker classes and functions as a module's.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "python"


def load_example(name: str) -> ModuleType:
    """Import examples/python/<name>.py as a module (examples are scripts, not a package)."""
    return load_script(EXAMPLES / f"{name}.py", f"example_{name}")


def load_script(path: Path, name: str) -> ModuleType:
    """Import the script at ``path`` as the module ``name`` (registered, so that its dataclasses find it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
