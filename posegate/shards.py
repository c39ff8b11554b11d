"""Full-dataset evaluation split into shards whose predictions merge before scoring.

Shard k of N takes a contiguous block of the samples whose edges fall on the evaluation batch, so the
batches (and with them every prediction) are the ones an unsharded run makes, and the shards' results
concatenated in order are the unsharded results. Each shard writes its results to a shared folder
(a CI artifact, or a path every xdist worker or ``--tx`` host sees); a later run with
``--merge-predictions`` reads all N back, checks that they cover the samples exactly once, and scores.
"""
from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

from posegate.flows import MissingData


class ShardWritten(MissingData):
    """A shard's predictions are written; scoring waits for the merge."""


def parse(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"--shard={text!r}: expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(m.group(1)), int(m.group(2))


def block(n: int, k: int, of: int, batch: int) -> slice:
    """Shard k (1-based) of ``of``: contiguous, cut on multiples of ``batch``."""
    per = math.ceil(math.ceil(n / batch) / of) * batch
    return slice(min(n, (k - 1) * per), min(n, k * per))


def name(label: str, digest: str, k: int, of: int) -> str:
    return f"{label}.{digest[:16]}.shard{k}of{of}.pkl"


def write(folder: Path, label: str, digest: str, k: int, of: int, samples: list, results: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name(label, digest, k, of)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps({"k": k, "of": of, "samples": samples, "results": results}))
    tmp.replace(path)
    return path


def merge(folder: Path, label: str, digest: str, samples: list) -> list:
    """All shards of one evaluation, checked against the samples they must cover, concatenated."""
    found = sorted(folder.glob(f"{label}.{digest[:16]}.shard*of*.pkl"))
    if not found:
        raise MissingData(f"no shard of {label} in {folder}: run each shard first with --shard=K/N "
                          f"--predictions-dir={folder}")
    parts = {}
    for f in found:
        try:
            part = pickle.loads(f.read_bytes())
        except Exception as e:
            raise ValueError(f"shard file {f} is unreadable ({type(e).__name__}: {e}); rerun that shard") from None
        parts[part["k"]] = part
    counts = {p["of"] for p in parts.values()}
    if len(counts) != 1:
        raise ValueError(f"shards of {label} in {folder} disagree on N: {sorted(counts)}; remove the stale ones")
    of = counts.pop()
    missing = [k for k in range(1, of + 1) if k not in parts]
    if missing:
        raise MissingData(f"{label}: shard(s) {', '.join(f'{k}/{of}' for k in missing)} missing in {folder}")
    covered = [s for k in range(1, of + 1) for s in parts[k]["samples"]]
    if covered != list(samples):
        raise ValueError(f"{label}: the {of} shards in {folder} cover {len(covered)} samples, not the "
                         f"{len(samples)} of this dataset in order; they were made from other data")
    return [r for k in range(1, of + 1) for r in parts[k]["results"]]
