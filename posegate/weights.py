"""Checkpoint loading that refuses to guess.

A checkpoint is loaded with ``weights_only=True``, unwrapped from its container, stripped of
wrapper prefixes and matched to the network by key and shape. Keys the spec declares ignorable
(e.g. the extra refinement stages of a 3-stage training checkpoint) are dropped and reported;
anything else that does not match is an error naming the file. A random network is only ever
built on purpose, and then marked synthetic everywhere.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import stat
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from posegate.compat import VersionLimit
from posegate.compat.numpy_pickle import multiarray
from posegate.compat.safe_load import load_weights_only


class WeightsError(ValueError):
    """A checkpoint that cannot be used as the spec's weights; the message names the file."""


@dataclass(frozen=True)
class WeightsInfo:
    kind: str  # "official" | "synthetic"
    identity: str  # stable id for cache keys and reports
    path: str | None = None
    sha256: str | None = None
    size: int | None = None
    ignored_keys: tuple[str, ...] = ()
    stripped_prefix: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def synthetic(self) -> bool:
        return self.kind == "synthetic"


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a checkpoint file (a link to nothing, a loop, a folder, a device
    such as /dev/zero that would be hashed forever), or None for a regular file."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"is a symbolic link to {os.readlink(path)}, which does not exist (an unmounted share?)"
        return "file not found"
    except OSError as e:
        return f"cannot be read ({e.strerror or e}; a symbolic link loop?)"
    if stat.S_ISREG(st.st_mode):
        return None
    kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode) else \
        "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket"
    return f"is {kind}, not a regular file"


def file_digest(path: Path, algo: str = "sha256") -> str:
    problem = not_a_regular_file(path)
    if problem:
        raise WeightsError(f"{path}: {problem}")
    st = Path(path).stat()
    return _file_digest(str(path), st.st_size, st.st_mtime_ns, algo)


def load_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(Path(path).read_text())
        manifest["state_dict"][0]["key"]
    except FileNotFoundError:
        raise WeightsError(f"{path}: manifest not found") from None
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        raise WeightsError(
            f"{path}: not a state-dict manifest (expected 'state_dict': [{{key, shape, dtype}}]): {e}") from None
    return manifest


def manifest_mismatches(state_dict: dict, manifest: dict) -> list[str]:
    """Differences between a network's state dict and the official layout (empty = identical)."""
    want = {e["key"]: (tuple(e["shape"]), e["dtype"]) for e in manifest["state_dict"]}
    have = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state_dict.items()}
    problems = [f"missing key {k}" for k in want if k not in have]
    problems += [f"unexpected key {k}" for k in have if k not in want]
    problems += [f"{k}: shape/dtype {have[k]} != manifest {want[k]}" for k in want if k in have and have[k] != want[k]]
    if not problems and list(want) != list(have):
        problems.append("same keys but in a different order than the manifest")
    return problems


def _numpy_globals() -> list:
    """What unpickling plain numpy arrays needs (a training RNG state), and nothing that runs code."""
    dtypes = [getattr(np.dtypes, n) for n in ("UInt32DType", "Int32DType", "Int64DType", "UInt64DType",
                                              "Float32DType", "Float64DType", "BoolDType")]
    core = multiarray()
    return [core._reconstruct, core.scalar, np.ndarray, np.dtype, *dtypes]


def read_checkpoint(path: Path, allow_numpy: bool = False, admit: tuple = ()) -> object:
    """torch.load with weights_only, every failure turned into a message about the file.

    ``allow_numpy`` admits numpy arrays beside the tensors: training containers (VideoPose3D's)
    keep the data loader's RNG state as one, and weights_only refuses them by default. ``admit`` names more
    plain-data classes a container may hold (a scheduler's Counter).
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise WeightsError(f"{path}: checkpoint file not found")
    problem = not_a_regular_file(path)
    if problem:
        raise WeightsError(f"{path}: {problem}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: checkpoint file is empty")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # zip (torch.save) or raw pickle
        raise WeightsError(f"{path}: not a PyTorch checkpoint (starts with {head!r}, neither a torch.save "
                           "zip archive nor a pickle)")
    try:
        return load_weights_only(path, (_numpy_globals() if allow_numpy else []) + list(admit))
    except VersionLimit as e:
        raise WeightsError(str(e)) from None
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"{path}: refused to unpickle: the file carries Python objects or code beyond tensors "
            f"(weights_only=True): {first}. Re-save it as a plain state dict.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise WeightsError(
            f"{path}: truncated or not a PyTorch checkpoint ({type(e).__name__}: {first}); "
            f"size {path.stat().st_size} bytes") from None


def unwrap_state_dict(obj: object, container_key: str | None, path: Path) -> dict:
    """The tensor dict inside a checkpoint container (tolerates {'state_dict': ...} and plain dicts)."""
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    for key in (container_key, "state_dict", "model"):
        if key and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path}: no tensors found (container keys: {sorted(map(str, obj))[:8]}; "
                           f"expected {container_key!r})")
    if len(tensors) != len(obj):
        extra = sorted(k for k in obj if k not in tensors)[:5]
        raise WeightsError(f"{path}: state dict holds non-tensor entries {extra}; wrong container key?")
    return tensors


def match_state_dict(tensors: dict, target: dict, spec_ckpt, path: Path) -> tuple[dict, list[str], str | None]:
    """Strip a wrapper prefix, drop declared-ignorable keys, and insist on an exact key/shape match."""
    stripped = None
    for prefix in spec_ckpt.strip_prefixes:
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
            stripped = prefix
    if spec_ckpt.adapt is not None:
        tensors = spec_ckpt.adapt(tensors)
    ignore = [re.compile(p) for p in spec_ckpt.ignorable]
    ignored = sorted(k for k in tensors if k not in target and any(p.match(k) for p in ignore))
    unexpected = sorted(k for k in tensors if k not in target and k not in ignored)
    missing = sorted(k for k in target if k not in tensors)
    wrong = sorted(f"{k} {tuple(tensors[k].shape)} (network {tuple(target[k].shape)})"
                   for k in target if k in tensors and tensors[k].shape != target[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}")
        raise WeightsError(f"{path}: does not match the network's layout: " + "; ".join(parts))
    return {k: tensors[k] for k in target}, ignored, stripped


def check_finite(tensors: dict, path: Path) -> None:
    """A NaN or Inf weight makes every output non-finite or silently wrong: refuse it, naming the keys."""
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in tensors.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())}
    if bad:
        keys = ", ".join(f"{k} ({n})" for k, n in sorted(bad.items())[:6])
        raise WeightsError(f"{path}: {len(bad)} tensor(s) hold NaN or Inf values: {keys}"
                           f"{' ...' if len(bad) > 6 else ''}; the checkpoint is corrupt or diverged")


def load_weights(network: torch.nn.Module, spec, path: Path) -> WeightsInfo:
    path = Path(path)
    obj = read_checkpoint(path, spec.checkpoint.numpy_in_container)
    tensors = unwrap_state_dict(obj, spec.checkpoint.container_key, path)
    matched, ignored, stripped = match_state_dict(tensors, network.state_dict(), spec.checkpoint, path)
    check_finite(matched, path)
    network.load_state_dict(matched, strict=True)
    sha = file_digest(path)
    notes = []
    ck = spec.checkpoint
    if path.name == ck.filename and ck.size is not None and path.stat().st_size != ck.size:
        notes.append(f"size {path.stat().st_size} differs from the published {ck.size}")
    for algo, published in ck.digests.items():
        if path.name == ck.filename and file_digest(path, algo) != published:
            notes.append(f"{algo} differs from the published checkpoint's")
    published = path.name == ck.filename or path.name in ck.alternatives
    return WeightsInfo(kind="official" if published and not notes else "checkpoint",
                       identity=f"{path.name}@{sha[:12]}", path=str(path), sha256=sha,
                       size=path.stat().st_size, ignored_keys=tuple(ignored), stripped_prefix=stripped,
                       notes=tuple(notes))


def build_model(spec, checkpoint: Path | str | None = None) -> torch.nn.Module:
    """The spec's network in eval mode, with ``posegate_weights`` telling where its weights came from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        network = spec.build_network()
    if checkpoint is None:
        info = WeightsInfo(kind="synthetic", identity=f"synthetic-seed{spec.seed}")
    else:
        info = load_weights(network, spec, Path(checkpoint))
    network.eval()
    network.posegate_weights = info
    return network
