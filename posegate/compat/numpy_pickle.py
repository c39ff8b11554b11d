"""Where numpy's pickling helpers live: numpy 2.0 renamed numpy.core to numpy._core (numpy.core stays as a
deprecated alias there); numpy 1.26 has only numpy.core."""
from __future__ import annotations

import numpy as np


def multiarray(numpy_module=np):
    core = getattr(numpy_module, "_core", None)
    if core is None or not hasattr(core, "multiarray"):
        core = numpy_module.core
    return core.multiarray
