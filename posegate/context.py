"""Where a run's data, weights, reference files and cache live, from options or the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYNTHETIC = "synthetic"
SYNTHETIC_IMAGES = 8


def _path(value) -> Path | None:
    return Path(value).expanduser().resolve() if value else None


@dataclass
class RunContext:
    data_root: Path | None
    weights_dir: Path | None
    reference_dir: Path | None
    cache_dir: Path
    full: bool = False

    @classmethod
    def from_options(cls, data_root=None, weights_dir=None, reference_dir=None, cache_dir=None, full=False):
        data_root = _path(data_root or os.environ.get("POSEGATE_DATA_ROOT"))
        weights_dir = _path(weights_dir or os.environ.get("POSEGATE_WEIGHTS_DIR"))
        reference_dir = _path(reference_dir or os.environ.get("POSEGATE_REFERENCE_DIR"))
        if reference_dir is None:
            # The reference files (manifests/, golden/) ship beside the data; the project's shared
            # folder is the default so a plain `pytest` still checks layouts and golden outputs.
            for candidate in (data_root, REPO.parent / "shared" / "data"):
                if candidate and (candidate / "manifests").is_dir():
                    reference_dir = candidate
                    break
        cache_dir = _path(cache_dir or os.environ.get("POSEGATE_CACHE_DIR")) or REPO / ".posegate_cache"
        return cls(data_root, weights_dir, reference_dir, cache_dir, full)

    # ---- datasets -------------------------------------------------------------------------------
    @cached_property
    def datasets(self) -> dict:
        """Name -> dataset; the synthetic set when no data root is given."""
        if self.data_root is None:
            return {SYNTHETIC: None}  # generated on first use
        from posegate.datasets.discovery import discover
        return {d.name: d for d in discover(self.data_root)}

    def dataset(self, name: str):
        ds = self.datasets[name]
        if ds is None:
            from posegate.datasets.coco import CocoKeypointDataset
            from posegate.datasets.synthetic import generate
            ds = CocoKeypointDataset(generate(self.cache_dir / "datasets" / SYNTHETIC, SYNTHETIC_IMAGES))
            self.datasets[name] = ds
        return ds

    def dataset_flags(self) -> list[tuple[str, bool]]:
        """(name, has_images) of every dataset, for parametrization at collection."""
        return [(n, True if d is None else d.has_images) for n, d in self.datasets.items()]

    def parity_dataset(self):
        """Real images for tensor parity: the smallest dataset with images, else the synthetic set."""
        with_images = [d for d in self.datasets.values() if d is not None and d.has_images]
        if with_images:
            return min(with_images, key=lambda d: len(d.image_ids))
        return self.dataset(SYNTHETIC)

    # ---- reference files ------------------------------------------------------------------------
    def reference_file(self, *parts: str) -> Path | None:
        if self.reference_dir is None:
            return None
        path = self.reference_dir.joinpath(*parts)
        return path if path.exists() else None
