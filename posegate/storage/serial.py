"""Results, samples and preprocessing records on disk without pickle.

Shards travel between hosts and cached entries can be edited by anyone with the cache folder, so
neither may be a pickle: reading one must never run code. A value tree (dict, list, tuple, str, int,
float, bool, None, numpy arrays and scalars, and the frozen dataclass records of posegate's own
codecs) is written as one ``.npz``: the tree as JSON in entry ``tree``, every array in its own entry,
read back with ``allow_pickle=False``. A record names its class; only dataclasses of posegate's or
the models' own modules, already imported, are rebuilt from their fields: reading imports nothing.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

_OWN = ("posegate.", "models.")
FORMAT = "posegate-serial-npz/1"  # part of cache keys: entries of an older storage are rebuilt, never misread


class SerialError(ValueError):
    """A file that is not a tree this module wrote; the message names the file."""


def dump(value, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    tree = json.dumps(_encode(value, arrays), allow_nan=True, separators=(",", ":"))
    buf = io.BytesIO()
    np.savez(buf, tree=np.frombuffer(tree.encode(), np.uint8), **arrays)
    Path(path).write_bytes(buf.getvalue())


def load(path: Path):
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "tree" not in files:
                raise SerialError(f"{path}: has no 'tree' entry; not a posegate results file")
            tree = json.loads(z["tree"].tobytes().decode())
            arrays = {k: z[k] for k in files if k != "tree"}
    except SerialError:
        raise
    except Exception as e:  # zip, npy-header and JSON errors all mean a damaged or foreign file
        raise SerialError(f"{path}: cannot be read as a posegate results file ({type(e).__name__}: {e})") from None
    try:
        return _decode(tree, arrays)
    except (KeyError, TypeError, ValueError, ImportError, AttributeError) as e:
        raise SerialError(f"{path}: holds a malformed value tree ({type(e).__name__}: {e})") from None


def _encode(v, arrays: dict):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"$float": repr(v)}
    if isinstance(v, (np.ndarray, np.generic)):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(v)
        return {"$array": name, "scalar": isinstance(v, np.generic)}
    if isinstance(v, tuple):
        return {"$tuple": [_encode(x, arrays) for x in v]}
    if isinstance(v, list):
        return [_encode(x, arrays) for x in v]
    if isinstance(v, dict):
        return {"$dict": [[_encode(k, arrays), _encode(x, arrays)] for k, x in v.items()]}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        cls = type(v)
        return {"$record": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _encode(getattr(v, f.name), arrays) for f in dataclasses.fields(v) if f.init}}
    raise TypeError(f"cannot store a {type(v).__name__} without pickle")


def _decode(t, arrays: dict):
    if isinstance(t, list):
        return [_decode(x, arrays) for x in t]
    if not isinstance(t, dict):
        return t
    if "$array" in t:
        a = arrays[t["$array"]]
        return a[()] if t.get("scalar") else a
    if "$float" in t:
        return float(t["$float"])
    if "$tuple" in t:
        return tuple(_decode(x, arrays) for x in t["$tuple"])
    if "$dict" in t:
        return {_decode(k, arrays): _decode(x, arrays) for k, x in t["$dict"]}
    if "$record" in t:
        return _record(t["$record"])(**{k: _decode(x, arrays) for k, x in t["fields"].items()})
    raise ValueError(f"unknown node {sorted(t)[:3]}")


def _record(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith(_OWN) or "." in qualname:
        raise ValueError(f"record class {name} is not one of posegate's or the models' own")
    # only modules already loaded (the model registry imports every codec): reading a file never imports
    loaded = sys.modules.get(module)
    if loaded is None:
        raise ValueError(f"record class {name}: module {module} is not loaded")
    cls = getattr(loaded, qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"{name} is not a dataclass record")
    return cls
