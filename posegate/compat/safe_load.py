"""torch.load(weights_only=True) with a few more admitted globals (numpy's array reconstruction, for training
containers that keep an RNG state). The unpickler's allow-list took additions from torch 2.4
(torch.serialization.add_safe_globals, process-wide; get/clear_safe_globals to undo) and a scoped form from 2.5
(the torch.serialization.safe_globals context). Before 2.4 the list is fixed: a file that needs one of them
cannot be read without unpickling arbitrary code, which the suite never does, so it says which torch it needs; a
file of tensors alone loads as on any release. weights_only is always
passed: its default flipped to True in torch 2.6, and the suite's behaviour must not depend on it."""
from __future__ import annotations

import contextlib
import pickle

import torch

from posegate.compat import VersionLimit, requirement, torch_release

ADD_SAFE_GLOBALS, SCOPED_SAFE_GLOBALS = (2, 4), (2, 5)


def load_weights_only(path, extra_globals=(), have: tuple[int, int] | None = None, torch_module=torch):
    """torch.load(path, map_location='cpu', weights_only=True) admitting ``extra_globals`` too."""
    have = have or torch_release()
    extra = list(extra_globals)
    if extra and have < ADD_SAFE_GLOBALS:
        try:
            return torch_module.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            needed = [g for g in extra if _qualified(g) in str(e)]
            if not needed:
                raise  # refused for a global nobody admits: the caller's "refused to unpickle"
            raise VersionLimit(f"{path}: " + requirement(
                f"reading a checkpoint that holds {_described(needed[0])}", ADD_SAFE_GLOBALS, have,
                "its weights_only unpickler admits no more globals before torch.serialization.add_safe_globals"
            )) from None
    with _admitted(extra, have, torch_module):
        return torch_module.load(path, map_location="cpu", weights_only=True)


def _qualified(obj) -> str:
    """How torch's unpickler names a global in its refusal (torch 2.0: 'Unsupported class
    numpy.core.multiarray._reconstruct')."""
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__name__', obj)}"


def _described(obj) -> str:
    name = _qualified(obj)
    return "numpy arrays" if name.startswith("numpy") else name


@contextlib.contextmanager
def _admitted(extra: list, have, torch_module):
    serialization = torch_module.serialization
    if not extra:
        yield
    elif have >= SCOPED_SAFE_GLOBALS:
        with serialization.safe_globals(extra):
            yield
    else:
        before = list(serialization.get_safe_globals())
        serialization.add_safe_globals(extra)
        try:
            yield
        finally:
            serialization.clear_safe_globals()
            serialization.add_safe_globals(before)
