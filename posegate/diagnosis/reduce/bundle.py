"""A reduced failure as a folder a vendor can run: the subgraph, its real inputs, the torch outputs, how it
was built, where, and one command that replays it.

    model.onnx      the subgraph (its outputs: the compared tensors inside it, the failing one last)
    inputs.npz      the torch reference's tensors at its inputs, every parity input a row
    expected.npz    the torch reference's values of its outputs
    bundle.json     backend, precision, converter call and settings, tolerance, the expected failure per
                    input, the search's counts, the machine fingerprint
    README.md       what fails, and the command that replays it

The .npz files are posegate.storage.serial value trees (a JSON tree and plain arrays, read with
allow_pickle=False): a bundle from someone else never runs code when loaded. Replaying reads only the
folder: no cache, weights or data.
"""
from __future__ import annotations

import json
from pathlib import Path

import onnx

from posegate.diagnosis.reduce.reference import CannotReduce
from posegate.diagnosis.reduce.runners import converter_call, runner
from posegate.diagnosis.reduce.search import SHAPE, judge_rows
from posegate.diagnosis.reduce.shape import nodes_of, verdict
from posegate.gate.machine import fingerprint
from posegate.storage import serial

FILES = ("model.onnx", "inputs.npz", "expected.npz", "bundle.json", "README.md")
FORMAT = "posegate-reduced/1"


def write(folder: Path, reduction, data, test_id: str, spec=None) -> Path:
    sub, feeds, expected = data
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(sub, str(folder / "model.onnx"))
    serial.dump(dict(feeds), folder / "inputs.npz")
    serial.dump(dict(expected), folder / "expected.npz")
    meta = {"format": FORMAT, "test": test_id, "model": getattr(spec, "name", None),
            "converter": converter_call(reduction.backend, reduction.precision, feeds, spec),
            "reduction": reduction.as_dict(), "machine": fingerprint()}
    (folder / "bundle.json").write_text(json.dumps(meta, indent=1, default=str))
    t = reduction.target
    conv = meta["converter"]
    call = " ".join(conv.get("command") or []) or conv.get("python", "")
    rows = ", ".join(f"input {v['row']}: {v['class'] or 'ok'} at {v['first'] or '-'}" for v in reduction.rows)
    (folder / "README.md").write_text(
        f"# Reduced failure: {test_id}\n\n"
        f"{reduction.backend} {reduction.precision} fails the {t['class']} check at tensor `{t['tensor']}` "
        f"(node `{t['node']}`, {t['op_type']}, torch module `{t['module'] or '-'}`): {len(reduction.nodes)} of the "
        f"exported graph's {reduction.graph_nodes} nodes, fed with the torch reference's own tensors "
        f"({len(reduction.rows)} parity input(s); {rows}).\n\n"
        f"Tolerance: max |backend - torch| <= {reduction.tolerance:.3g} x max |torch|, per output tensor.\n\n"
        f"Build it as the suite does: `{call}`\n\n"
        f"Replay (fails while the bug is there, passes once it is fixed):\n\n"
        f"```\npython3 -m pytest --replay={folder.resolve()}\n```\n\n"
        f"Nodes: {', '.join(f'`{n}`' for n in reduction.nodes)}\n\n"
        f"Found with {reduction.conversions} subgraph conversions and {reduction.localisation_runs} localisation "
        f"run(s) (budget {reduction.budget}); machine {meta['machine']['cpu']}, {meta['machine']['accelerator']}; "
        f"details in bundle.json.\n")
    return folder


def load(folder: Path) -> tuple[dict, onnx.ModelProto, dict, dict]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--replay {folder}: no such folder")
    missing = [f for f in FILES[:4] if not (folder / f).is_file()]
    if missing:
        raise ValueError(f"--replay {folder}: not a reduced bundle, missing {missing}")
    meta = json.loads((folder / "bundle.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / 'bundle.json'}: format {meta.get('format')!r}, expected {FORMAT}")
    return meta, onnx.load(str(folder / "model.onnx")), serial.load(folder / "inputs.npz"), \
        serial.load(folder / "expected.npz")


def replay(folder: Path) -> tuple[list[dict], dict]:
    """(the verdict per parity input now, the bundle's metadata): the subgraph built and run on its backend."""
    meta, model, feeds, expected = load(folder)
    r = meta["reduction"]
    run = runner(r["backend"], r["precision"])
    outputs = [o.name for o in model.graph.output]
    rows = len(r["rows"]) if r["rows"] else next(iter(feeds.values())).shape[0] if feeds else 1
    try:
        got = run.run(model, feeds)
    except Exception as e:
        if r["target"].get("class") != SHAPE:
            raise
        return verdict(e, nodes_of(model), rows), meta
    return judge_rows(outputs, got, expected, r["tolerance"], rows), meta


def same_failure(now: list[dict], meta: dict) -> bool:
    r = meta["reduction"]
    want = r["target"]
    return all(now[i]["first"] == want["tensor"] and now[i]["class"] == want["class"] for i in r["rows_required"])


__all__ = ["CannotReduce", "load", "replay", "same_failure", "write"]
