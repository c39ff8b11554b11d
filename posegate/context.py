"""Where a run's data, weights, reference files and cache live, from options or the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from posegate.artifacts import bind, parse_option
from posegate.backends import BACKENDS
from posegate.datasets import KINDS
from posegate.datasets.discovery import discover

REPO = Path(__file__).resolve().parent.parent
SYNTHETIC = "synthetic"


def _path(value, option: str = "path") -> Path | None:
    """The absolute path of an option's value; a link loop or a link to nothing is an error naming the
    option and the link (an unmounted share must not read as "not given")."""
    if not value:
        return None
    given = Path(value).expanduser()
    try:
        resolved = given.resolve()
    except (RuntimeError, OSError) as e:  # RuntimeError: Python < 3.13 on a loop
        raise ValueError(f"{option}={value}: is or passes through a symbolic link loop ({e}); "
                         "point it at a real folder") from None
    if os.path.lexists(given) and not os.path.exists(given):
        try:
            target = os.readlink(given)
        except OSError:
            target = "?"
        what = "a symbolic link loop" if os.path.lexists(resolved) or target == "?" else \
            f"a symbolic link to {target}, which does not exist (an unmounted share?)"
        raise ValueError(f"{option}={value}: is {what}; point it at a real folder")
    return resolved


@dataclass
class RunContext:
    data_root: Path | None
    weights_dir: Path | None
    reference_dir: Path | None
    cache_dir: Path
    full: bool = False
    boxes: str = "detections"
    supplied: dict = field(default_factory=dict)  # --artifact: (model, backend, precision|None) -> path
    found: list | None = None  # the data root's datasets, once the start-up check (posegate.startup_checks) read them

    @classmethod
    def from_options(cls, data_root=None, weights_dir=None, reference_dir=None, cache_dir=None, full=False,
                     boxes=None, artifacts=()):
        data_root = _path(data_root or os.environ.get("POSEGATE_DATA_ROOT"), "--data-root")
        weights_dir = _path(weights_dir or os.environ.get("POSEGATE_WEIGHTS_DIR"), "--weights-dir")
        reference_dir = _path(reference_dir or os.environ.get("POSEGATE_REFERENCE_DIR"), "--reference-dir")
        if reference_dir is None:
            # The reference files (manifests/, golden/) ship beside the data; the project's shared
            # folder is the default so a plain `pytest` still checks layouts and golden outputs.
            for candidate in (data_root, REPO.parent / "shared" / "data"):
                if candidate and (candidate / "manifests").is_dir():
                    reference_dir = candidate
                    break
        cache_dir = _path(cache_dir or os.environ.get("POSEGATE_CACHE_DIR"), "--cache-dir") or REPO / ".posegate_cache"
        boxes = boxes or os.environ.get("POSEGATE_BOXES") or "detections"
        if boxes not in ("detections", "ground-truth"):
            raise ValueError(f"POSEGATE_BOXES={boxes!r}: expected 'detections' or 'ground-truth'")
        return cls(data_root, weights_dir, reference_dir, cache_dir, full, boxes, parse_option(artifacts))

    @property
    def options(self) -> dict:
        """What flows read from the run (part of every prediction's cache key through the flow)."""
        return {"boxes": self.boxes}

    def artifacts(self, specs) -> dict:
        """(model, backend, precision) -> BoundArtifact: the spec-declared and --artifact converted models."""
        if not hasattr(self, "_artifacts"):
            self._artifacts = bind(specs, self.supplied, self.weights_dir, BACKENDS)
        return self._artifacts

    # ---- datasets -------------------------------------------------------------------------------
    @cached_property
    def datasets(self) -> dict[str, dict[str, object]]:
        """Kind -> name -> dataset; a synthetic set (drawn on first use) for each kind without real data."""
        if self.data_root is None:
            return {kind: {SYNTHETIC: None} for kind in KINDS}
        found: dict[str, dict[str, object]] = {kind: {} for kind in KINDS}
        # the sets the start-up check already read (posegate.startup_checks), else read them now
        for d in self.found if self.found is not None else discover(self.data_root):
            found[d.kind][d.name] = d
        for sets in found.values():
            # a kind the data root lacks still gets its synthetic set, so its models run end to end
            if not sets:
                sets[SYNTHETIC] = None
        return found

    def dataset(self, kind: str, name: str):
        sets = self.datasets.setdefault(kind, {})
        if name not in sets:
            raise KeyError(f"no {kind} dataset named {name!r}; found {sorted(sets)}")
        if sets[name] is None:
            sets[name] = KINDS[kind].synthetic(self.cache_dir / "datasets" / kind / SYNTHETIC, self.reference_dir)
        return sets[name]

    def dataset_flags(self) -> dict[str, list[tuple[str, bool]]]:
        """Kind -> (name, has_inputs) of each dataset, for parametrization at collection."""
        return {kind: [(n, True if d is None else d.has_inputs) for n, d in sets.items()]
                for kind, sets in self.datasets.items()}

    def real_inputs(self, kind: str) -> list:
        """The datasets of the kind with inputs to run a network on (the synthetic set is not one of them)."""
        return [d for d in self.datasets.get(kind, {}).values() if d is not None and d.has_inputs]

    def parity_dataset(self, kind: str):
        """Real inputs for tensor parity: the smallest dataset of the kind with inputs, else a synthetic set."""
        usable = self.real_inputs(kind)
        if usable:
            return min(usable, key=len)
        self.datasets.setdefault(kind, {}).setdefault(SYNTHETIC, None)
        return self.dataset(kind, SYNTHETIC)

    # ---- reference files ------------------------------------------------------------------------
    def reference_file(self, *parts: str) -> Path | None:
        if self.reference_dir is None:
            return None
        path = self.reference_dir.joinpath(*parts)
        return path if path.exists() else None
