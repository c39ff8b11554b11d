"""torch.load(weights_only=True) with a few more admitted globals (numpy's array reconstruction, for training
containers that keep an RNG state). The unpickler's allow-list took additions from torch 2.4
(torch.serialization.add_safe_globals, process-wide; get/clear_safe_globals to undo) and a scoped form from 2.5
(the torch.serialization.safe_globals context). Before 2.4 the list is fixed: such a file cannot be read without
unpickling arbitrary code, which the suite never does, so it says which torch it needs. weights_only is always
passed: its default flipped to True in torch 2.6, and the suite's behaviour must not depend on it."""
from __future__ import annotations

import contextlib

import torch

from posegate.compat import VersionLimit, requirement, torch_release

ADD_SAFE_GLOBALS, SCOPED_SAFE_GLOBALS = (2, 4), (2, 5)


def load_weights_only(path, extra_globals=(), have: tuple[int, int] | None = None, torch_module=torch):
    """torch.load(path, map_location='cpu', weights_only=True) admitting ``extra_globals`` too."""
    have = have or torch_release()
    with _admitted(list(extra_globals), have, torch_module, path):
        return torch_module.load(path, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def _admitted(extra: list, have, torch_module, path):
    serialization = torch_module.serialization
    if not extra:
        yield
    elif have >= SCOPED_SAFE_GLOBALS:
        with serialization.safe_globals(extra):
            yield
    elif have >= ADD_SAFE_GLOBALS:
        before = list(serialization.get_safe_globals())
        serialization.add_safe_globals(extra)
        try:
            yield
        finally:
            serialization.clear_safe_globals()
            serialization.add_safe_globals(before)
    else:
        raise VersionLimit(f"{path}: " + requirement(
            "reading a checkpoint that holds numpy arrays", ADD_SAFE_GLOBALS, have,
            "its weights_only unpickler admits no numpy globals before torch.serialization.add_safe_globals"))
