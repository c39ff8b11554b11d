"""Full-dataset evaluation split into shards whose predictions merge before scoring.

Shard k of N takes a contiguous block of the samples whose edges fall on the evaluation batch, so the
batches (and with them every prediction) are the ones an unsharded run makes, and the shards' results
concatenated in order are the unsharded results. Each shard writes its results to a shared folder
(a CI artifact, or a path every xdist worker or ``--tx`` host sees); a later run with
``--merge-predictions`` reads all N back, checks that they cover the samples exactly once, and scores.
Shards are npz files of plain values (``posegate.storage.serial``), never pickles: a dropped-in file cannot run code.
"""
from __future__ import annotations

import glob
import math
import re
from pathlib import Path

from posegate.flows.kinds import MissingData
from posegate.storage import serial


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


SUFFIX = ".npz"


class ShardError(ValueError):
    """Merging cannot give the unsharded result: a shard is missing, foreign or damaged. A failure, not a skip."""


def name(label: str, digest: str, k: int, of: int) -> str:
    return f"{label}.{digest[:16]}.shard{k}of{of}{SUFFIX}"


def write(folder: Path, label: str, digest: str, k: int, of: int, samples: list, results: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name(label, digest, k, of)
    tmp = path.with_name(path.name + ".tmp")
    serial.dump({"k": k, "of": of, "label": label, "digest": digest, "samples": samples, "results": results}, tmp)
    tmp.replace(path)
    return path


def merge(folder: Path, label: str, digest: str, samples: list) -> list:
    """All shards of one evaluation, checked against the samples they must cover, concatenated."""
    if not folder.is_dir():
        raise ShardError(f"--merge-predictions={folder}: no such folder; pass the --predictions-dir the shards wrote")
    found = sorted(folder.glob(f"{glob.escape(label)}.{digest[:16]}.shard*of*{SUFFIX}"))
    foreign = sorted(p.name for p in folder.glob(f"{glob.escape(label)}.*.shard*of*{SUFFIX}") if p not in found)
    if foreign:
        raise ShardError(f"{label}: shard(s) {', '.join(foreign)} in {folder} were made from other data, weights or "
                         "settings than this run's; refused: remove them or rerun those shards")
    if not found:
        legacy = sorted(p.name for p in folder.glob(f"{glob.escape(label)}.*.pkl"))
        why = f" (pickle shards {', '.join(legacy)} are never read: rerun the shards)" if legacy else ""
        raise ShardError(f"no shard of {label} in {folder}{why}: run each shard first with --shard=K/N "
                         f"--predictions-dir={folder}")
    parts: dict[int, tuple[Path, dict]] = {}
    for f in found:
        try:
            part = serial.load(f)
            problem = _part_problem(part, f, label, digest)
        except (ValueError, KeyError, TypeError) as e:
            problem = str(e)
        if problem:
            raise ShardError(f"shard file {f} is unreadable or foreign ({problem}); rerun that shard") from None
        if part["k"] in parts:
            raise ShardError(f"shard files {parts[part['k']][0]} and {f} both hold shard {part['k']}; one was "
                             "copied or edited: remove it and rerun that shard")
        parts[part["k"]] = (f, part)
    counts = {p["of"] for _, p in parts.values()}
    if len(counts) != 1:
        raise ShardError(f"shards of {label} in {folder} disagree on N: {sorted(counts)}; remove the stale ones")
    of = counts.pop()
    missing = [k for k in range(1, of + 1) if k not in parts]
    if missing:
        raise ShardError(f"{label}: shard(s) {', '.join(f'{k}/{of}' for k in missing)} missing in {folder}; "
                         "run them before merging")
    position = 0
    for k in range(1, of + 1):
        f, part = parts[k]
        mine = part["samples"]
        if mine != list(samples[position:position + len(mine)]):
            raise ShardError(f"shard file {f}: its {len(mine)} samples are not samples {position} to "
                             f"{position + len(mine) - 1} of this dataset in order; it was made from other data or "
                             "edited: rerun that shard")
        position += len(mine)
    if position != len(samples):
        raise ShardError(f"{label}: the {of} shards in {folder} cover {position} samples, not the "
                         f"{len(samples)} of this dataset in order; they were made from other data")
    return [r for k in range(1, of + 1) for r in parts[k][1]["results"]]


def _part_problem(part, path: Path, label: str, digest: str) -> str | None:
    """Why a shard file's contents do not match what its name and this run say (None: they do)."""
    if not isinstance(part, dict):
        return f"holds a {type(part).__name__}, not a shard record"
    if part.get("digest") != digest or part.get("label") != label:
        return "its recorded label or data digest differs from its name's"
    k, of = part.get("k"), part.get("of")
    if type(k) is not int or type(of) is not int or not 1 <= k <= of:
        return f"records shard {k!r} of {of!r}, not K of N with 1 <= K <= N"
    if not path.name.endswith(f".shard{k}of{of}{SUFFIX}"):
        return f"records shard {k}/{of}, its name says otherwise"
    if not isinstance(part.get("samples"), list) or not isinstance(part.get("results"), list):
        return "its samples or results are not lists"
    return None
