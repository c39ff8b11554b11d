"""What a run was given, checked before anything is collected: a path the user named must be what it
claims, or the run stops with one line saying which option and what is wrong (never a quiet run on
synthetic data), and the session header says what was found.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from posegate.backends import BACKENDS
from posegate.datasets.base import DatasetError
from posegate.datasets.discovery import discover
from posegate.port.options import PortOptionError
from posegate.port.options import parse as parse_ports
from posegate.storage.cache import CacheDirError, claim
from posegate.training.checkpoints import MOBILENET_FILE
from posegate.weights import file_digest, not_a_regular_file


class InputError(ValueError):
    """A given option or file that cannot be used; the message names the option, the path and the fix."""


def expected_weight_files(specs) -> list[str]:
    """The file names a weights dir is searched for: every spec's checkpoint and alternatives, the
    contract files of supplied artifacts, and the training pipeline's inputs."""
    names = []
    for spec in specs:
        names += [spec.checkpoint.filename, *spec.checkpoint.alternatives]
        names += [c.path for c in getattr(spec, "artifacts", ()) or () if getattr(c, "path", None)]
    names += [MOBILENET_FILE] + [f for spec in specs if getattr(spec, "training", None)
                                 for f in spec.training.step_checkpoints]
    return list(dict.fromkeys(str(n) for n in names))


def check_weights_dir(path: Path | None, specs) -> list[Path]:
    """The recognised files in a given weights dir; InputError when it is absent or holds none."""
    if path is None:
        return []
    if not path.is_dir():
        raise InputError(f"--weights-dir={path}: does not exist or is not a folder; point it at the folder "
                         "holding the checkpoints by their official file names, or leave it out for seeded weights")
    names = expected_weight_files(specs)
    found = [path / n for n in names if os.path.lexists(path / n)]
    folders = _artifact_folders(specs)
    for name in names:
        problem = not_a_regular_file(path / name) if os.path.lexists(path / name) else None
        if problem and not (name in folders and (path / name).is_dir()):
            raise InputError(f"--weights-dir={path}: {name} {problem}; the suite never falls back to seeded "
                             "weights for a file that is there: fix it or remove it")
    if not found:
        present = sorted(p.name for p in path.iterdir())[:4]
        raise InputError(f"--weights-dir={path}: holds none of the checkpoint files this suite knows "
                         f"({', '.join(names[:5])}, ...); it has {present or 'nothing'}. Name the files as "
                         "the README lists, or point at the right folder")
    return found


def _artifact_folders(specs) -> set[str]:
    """The weights-dir names that are converted models supplied as folders (an OpenVINO IR folder)."""
    return {str(c.path) for spec in specs for c in getattr(spec, "artifacts", ()) or () if getattr(c, "path", None)}


def check_data_root(path: Path | None) -> list:
    """The datasets of a given data root; InputError when it is absent, unreadable or holds none."""
    if path is None:
        return []
    if not path.is_dir():
        raise InputError(f"--data-root={path}: does not exist or is not a folder; point it at the folder that "
                         "holds the dataset folders, or leave it out for the synthetic sets")
    try:
        found = discover(path)
    except DatasetError as e:
        raise InputError(f"--data-root={path}: {e}") from None
    except OSError as e:
        raise InputError(f"--data-root={path}: cannot be read ({e.strerror or e})") from None
    if found:
        return found
    deeper = _deeper_roots(path)
    hint = (f"; datasets were found one level further down, in {', '.join(map(str, deeper))}: pass that folder"
            if deeper else "")
    raise InputError(f"--data-root={path}: no dataset recognised in it or its direct subfolders (a COCO folder holds "
                     f"annotations/person_keypoints_val2017.json, a Human3.6M one data_3d_h36m.npz){hint}")


def _deeper_roots(path: Path) -> list[Path]:
    roots = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            if discover(sub):
                roots.append(sub)
        except (ValueError, OSError):
            roots.append(sub)  # something claims to be a dataset there; discovery will say what is wrong
    return roots[:3]


def check_artifacts(context, specs) -> None:
    """Each --artifact file exists and names a known model and backend (bound once, here)."""
    for (model, backend, _), path in context.supplied.items():
        if not os.path.lexists(path):
            raise InputError(f"--artifact {model}:{backend}={path}: no such file")
    for bound in context.artifacts(specs).values():
        if bound.path is None:
            continue
        given = f"--artifact {bound.model}:{bound.contract.backend}" if bound.origin == "--artifact" else \
            f"--weights-dir {bound.model}:{bound.contract.backend}"
        if not os.path.exists(bound.path):  # a link to nothing or a loop
            raise InputError(f"{given}={bound.path}: {not_a_regular_file(bound.path)}")
        backend = BACKENDS.get(bound.contract.backend)
        problem = backend.supplied_path_problem(bound.path) if backend is not None else None
        if problem:
            raise InputError(f"{given}={bound.path}: {problem}")


def check_ports(values, specs) -> dict:
    """--port values: model -> PortFiles, each path checked (InputError naming the value otherwise)."""
    try:
        return parse_ports(values, {s.name: s for s in specs})
    except PortOptionError as e:
        raise InputError(str(e)) from None


def check_reference_dir(path: Path | None, given: bool) -> None:
    if given and path is not None and not path.is_dir():
        raise InputError(f"--reference-dir={path}: does not exist or is not a folder (it holds manifests/ and "
                         "golden/)")


def check_cache_dir(path: Path, option: str = "--cache-dir", own: bool = False) -> None:
    """The cache (or a shard folder) must take files: said once here, not as a failure in every test that
    builds something. With ``own`` the folder must also be the suite's (``posegate.storage.cache.claim``): a
    folder holding other things is refused, never written or cleaned."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if own:
            claim(path)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except CacheDirError as e:
        raise InputError(f"{option}={e}") from None
    except OSError as e:
        raise InputError(f"{option}={path}: not writable ({e.strerror or e}); choose a folder this user can "
                         "write, e.g. --cache-dir=/tmp/posegate-cache") from None


def check_output_file(option: str, value: str | None) -> None:
    """A file the run will write at its end must be writable now, not after an hour of tests."""
    if not value:
        return
    path = _resolved(option, value)
    if path.is_dir():
        raise InputError(f"{option}={value}: is a folder; give a file path")
    if not path.parent.is_dir():
        raise InputError(f"{option}={value}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{option}={value}: folder {path.parent} is not writable")


def check_output_dir(option: str, value: str | None) -> None:
    """A folder the run will write into (pictures, advice) must be one, or be creatable, now."""
    if not value:
        return
    path = _resolved(option, value)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option}={value}: is a file, not a folder; give a folder path")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{option}={value}: {ancestor} is a file, so the folder cannot be made there")
    if not os.access(ancestor, os.W_OK):
        raise InputError(f"{option}={value}: folder {ancestor} is not writable")


def _resolved(option: str, value: str) -> Path:
    given = Path(value).expanduser()
    try:
        path = given.resolve()
    except (RuntimeError, OSError) as e:  # RuntimeError: a link loop, on Python < 3.13
        raise InputError(f"{option}={value}: is or passes through a symbolic link loop ({e})") from None
    if os.path.lexists(given) and not os.path.exists(given):
        raise InputError(f"{option}={value}: is a symbolic link to nothing or a loop; fix or remove it")
    return path


def header_lines(context, specs) -> list[str]:
    """What this run found: each dataset with identity and image count, each checkpoint with digest."""
    lines = []
    if context.data_root is None:
        lines.append("posegate datasets: synthetic (drawn into the cache; no --data-root)")
    else:
        for kind, sets in sorted(context.datasets.items()):
            for d in sets.values():
                if d is None:
                    lines.append(f"posegate dataset [{kind}]: synthetic ({context.data_root} holds no {kind} set)")
                else:
                    count = f"{len(d)} images" if kind == "coco-keypoints" else f"{len(d)} sequences"
                    inputs = "" if d.has_inputs else ", annotations only"
                    lines.append(f"posegate dataset [{kind}]: {d.identity} ({count}{inputs})")
    if context.weights_dir is None:
        lines.append("posegate weights: seeded (synthetic-seed<N>; no --weights-dir)")
    else:
        for path in check_weights_dir(context.weights_dir, specs):
            what = f"@{file_digest(path)[:12]}" if path.is_file() else " (folder)"
            lines.append(f"posegate checkpoint: {path.relative_to(context.weights_dir)}{what}")
        missing = [s.name for s in specs if not any((context.weights_dir / n).exists()
                                                     for n in (s.checkpoint.filename, *s.checkpoint.alternatives))]
        if missing:
            lines.append(f"posegate weights: seeded for {', '.join(missing)}")
    return lines
