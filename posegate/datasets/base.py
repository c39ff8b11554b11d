"""What every dataset is, whatever its kind: a folder with a name, a size, an identity, and an official flag.

Results, baselines and skips speak of a dataset through this surface only, so a new kind of data
(a new task's set) plugs into them by deriving from ``Dataset``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the remedy."""


class Dataset(ABC):
    kind: ClassVar[str]  # the DatasetKind it belongs to ("coco-keypoints", "h36m")

    def __init__(self, root: Path):
        self._root = Path(root).resolve()

    def __repr__(self) -> str:
        # The folder, not the identity: a repr must not read (or fail on) the dataset's files.
        return f"{type(self).__name__}({self._root})"

    def __len__(self) -> int:
        return len(self.units)

    @property
    def name(self) -> str:
        return self._root.name

    @property
    def root(self) -> Path:
        return self._root

    @property
    @abstractmethod
    def units(self) -> list:
        """What the metric is computed over (image ids, sequences), in a fixed order."""

    @property
    @abstractmethod
    def identity(self) -> str:
        """``name@sha256-prefix:N...``, covering every byte the results depend on."""

    @property
    @abstractmethod
    def has_inputs(self) -> bool:
        """Whether inference can run on it, beside metric-only uses."""

    @property
    @abstractmethod
    def is_official(self) -> bool:
        """Whether it is the set a model's published figure was measured on."""
