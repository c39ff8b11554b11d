"""Recipe weights and inputs of the golden files (../shared/data/golden/README.md), reimplemented.

Each tensor has its own generator seeded with the CRC-32 of its key, so the weights follow from a
manifest alone; ``recipe_digest`` lets a test prove the regeneration is exact before trusting it.
"""
from __future__ import annotations

import hashlib
import zlib

import numpy as np


def recipe_tensor(key: str, shape, dtype: str = "float32") -> np.ndarray:
    shape = tuple(shape)
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=dtype)
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    if key.endswith("running_var"):
        values = rng.uniform(0.5, 1.5, shape)
    elif key.endswith("running_mean"):
        values = rng.normal(0.0, 0.1, shape)
    elif len(shape) == 1 and key.endswith(".weight"):
        values = rng.uniform(0.5, 1.5, shape)
    elif len(shape) == 1:
        values = rng.normal(0.0, 0.1, shape)
    else:
        values = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[1:])), shape)
    return values.astype(np.float32)


def recipe_state_dict(manifest: dict) -> dict[str, np.ndarray]:
    return {e["key"]: recipe_tensor(e["key"], e["shape"], e["dtype"]) for e in manifest["state_dict"]}


def recipe_digest(state: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for value in state.values():
        h.update(np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()
