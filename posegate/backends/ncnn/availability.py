"""Whether ncnn (the runtime) and pnnx (its converter) are usable here. The runtime goes through
posegate.backends.lazy like every optional engine; the converter is an executable inside its wheel, found
without importing the package (which imports torch)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from posegate.backends.lazy import reason

RUNTIME = "ncnn"  # the PyPI distribution of the Python binding, module ``ncnn``
CONVERTER = "pnnx"  # the PyPI distribution shipping the pnnx executable inside its package folder
INSTALL = "pip install ncnn==1.0.20261020 pnnx==20261020"


def runtime_problem() -> str | None:
    """Why the ncnn runtime cannot run here (None: it can)."""
    return reason(RUNTIME, INSTALL)


def pnnx_executable() -> Path | None:
    """The pnnx binary the wheel ships as ``pnnx/pnnx`` (its __init__ builds EXEC_PATH from the package
    folder: Tencent/ncnn tools/pnnx/python/pnnx/__init__.py)."""
    found = importlib.util.find_spec(CONVERTER)
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        exe = Path(folder) / ("pnnx.exe" if os.name == "nt" else "pnnx")
        if exe.is_file():
            return exe
    return None


def converter_problem() -> str | None:
    """Why pnnx cannot convert here (None: it can)."""
    exe = pnnx_executable()
    if exe is None:
        return f"the pnnx converter is not installed (no pnnx/pnnx executable); {INSTALL}"
    if not os.access(exe, os.X_OK):
        return f"{exe} is not executable; reinstall the pnnx wheel ({INSTALL})"
    return None
