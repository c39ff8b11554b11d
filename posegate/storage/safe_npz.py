"""Reading ``.npz`` files whose entries are pickled dicts (VideoPose3D's Human3.6M files) without
letting the file run code.

numpy's own loader, once pickles are allowed, hands the pickle stream to ``pickle.load``, which imports and calls any
global the stream names: a crafted ``data_3d_h36m.npz`` can run ``os.system``. Here an object array's
stream goes through an unpickler whose ``find_class`` admits only numpy's own array and scalar
reconstruction (dicts, lists, tuples and strings need no globals at all); anything else is refused
with the name of the global, before it is imported.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

# (module, name) of the globals numpy's array pickles name; "numpy.core" is how files written by
# numpy 1.x spell the module, "numpy._core" how numpy 2.x does.
_ALLOWED = {
    (mod, name)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}
_DTYPE_CLASSES = {f"{k}DType" for k in ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32",
                                        "UInt64", "Float16", "Float32", "Float64", "Str", "Bytes", "Object")}


class RefusedPickle(pickle.UnpicklingError):
    """The stream names a global outside numpy's array reconstruction."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED or (module == "numpy.dtypes" and name in _DTYPE_CLASSES):
            return super().find_class(module, name)
        raise RefusedPickle(f"refused global {module}.{name}")


def _read_npy(raw: bytes) -> np.ndarray:
    f = io.BytesIO(raw)
    version = np.lib.format.read_magic(f)
    header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if header is None:
        raise ValueError(f"npy format version {version} is not supported")
    shape, fortran, dtype = header(f)
    if not dtype.hasobject:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    # numpy writes an object array as the pickle of the array itself; latin1 reads py2-era byte strings
    array = _Restricted(f, encoding="latin1").load()
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise ValueError(f"object array entry holds a {type(array).__name__}, not the declared {shape} array")
    return array


def load(path: Path) -> dict[str, np.ndarray]:
    """Every entry of an npz archive; object arrays unpickled with only numpy's reconstruction admitted.

    Raises RefusedPickle for a stream naming any other global, and zipfile/ValueError/pickle errors for a
    damaged file.
    """
    out = {}
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            if member.endswith(".npy"):
                out[member[:-4]] = _read_npy(z.read(member))
    return out
