"""Ascend NPUs: ONNX -> OM through ATC (posegate.backends.atc), one OM per (batch, input shape), run
with ais_bench's InferSession. Timing is the NPU compute time ais_bench reports, which excludes
host<->device copies, as the seeds' figures do.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

from posegate.backends.atc import AtcError, atc_command, chip_name, producer_nodes, run_atc
from posegate.backends.base import Backend, Session, SessionInfo

ATC_OPSET = 11  # seed 001: ATC supports ONNX opset 11
DEVICE_ENV = "POSEGATE_ASCEND_DEVICE"


# -------------------------------------------------------------------------------------- ais_bench

def durations_ms(entries) -> list[float]:
    """ais_bench's per-call compute times, whichever form its version reports: durations in ms, or
    (start, end) pairs in ms."""
    out = []
    for e in entries or ():
        if isinstance(e, (tuple, list)) and len(e) == 2:
            out.append(float(e[1]) - float(e[0]))
        else:
            out.append(float(e))
    return out


def _call_first(obj, names, *args):
    for n in names:
        fn = getattr(obj, n, None)
        if callable(fn):
            return fn(*args)
    raise AttributeError(f"{type(obj).__name__} has none of {names} (unsupported ais_bench version)")


def _to_numpy(o) -> np.ndarray:
    """Arrays from every ais_bench generation: numpy already, or aclruntime tensors still on the device."""
    if isinstance(o, np.ndarray):
        return o
    if callable(getattr(o, "to_host", None)):
        o.to_host()
    return np.array(o)


def infer_mode(spec, om_inputs_shape) -> str:
    """ais_bench's mode for an OM: 'dymhw' for image-size gears, 'dymdims' for other gears, else 'static'."""
    if not any(d is None or (isinstance(d, int) and d < 0) for d in om_inputs_shape):
        return "static"
    return "dymhw" if spec.atc.input_format == "NCHW" and len(om_inputs_shape) == 4 else "dymdims"


def match_outputs(engine_names: list[str], wanted: list[str]) -> list[int]:
    """Index of each wanted output among the OM's, whose names ATC may decorate ('Conv_1:0:heatmaps')."""
    order = []
    for w in wanted:
        hits = [i for i, n in enumerate(engine_names) if n == w or n.endswith(":" + w) or n.split(":")[-1] == w]
        if len(hits) != 1:
            if len(engine_names) == len(wanted):  # ATC kept the graph's order but renamed every output
                return list(range(len(wanted)))
            raise ValueError(f"OM outputs {engine_names}: cannot find {w!r}")
        order.append(hits[0])
    return order


class AisSession(Session):
    def __init__(self, spec, om: Path, precision: str, device_id: int, io=None, infer_session=None):
        if infer_session is None:
            from ais_bench.infer.interface import InferSession as infer_session
        self.sess = infer_session(device_id, str(om))
        super().__init__(spec, SessionInfo("ascend", precision, precision, {"om": str(om), "device_id": device_id}), io)
        ins, outs = self.signature()
        self.mode = infer_mode(spec, next(iter(ins.values())))
        try:
            self.order, self.problem = match_outputs(list(outs), self.io.engine_outputs), None
        except ValueError as e:  # a supplied OM's interface check reports every difference at once
            self.order, self.problem = None, f"{om}: {e}"
        self.info.details["mode"] = self.mode
        self.device_ms = []  # NPU compute time of each call, from ais_bench's summary

    def signature(self):
        def dims(shape):
            return [None if (not isinstance(d, int) or d < 0) else d for d in shape]
        return ({i.name: dims(i.shape) for i in self.sess.get_inputs()},
                {o.name: dims(o.shape) for o in self.sess.get_outputs()})

    def _run(self, x):
        if self.problem:
            raise ValueError(self.problem)
        _call_first(self.sess, ("reset_summaryinfo", "reset_sumaryinfo"))
        if self.mode == "static":
            outs = self.sess.infer([x])
        else:
            outs = self.sess.infer([x], mode=self.mode)
        summary = _call_first(self.sess, ("summary", "sumary"))
        self.device_ms += durations_ms(getattr(summary, "exec_time_list", ()))
        outs = [_to_numpy(o) for o in outs]
        return [outs[i] for i in self.order]

    def close(self):
        if self.sess is not None:
            for name in ("free_resource", "finalize"):
                if callable(getattr(self.sess, name, None)):
                    getattr(self.sess, name)()
                    break
        self.sess = None


class AscendBackend(Backend):
    name = "ascend"
    precisions = ("fp16", "fp32")
    static_shapes = True
    opset = ATC_OPSET

    def unavailable_reason(self):
        if shutil.which("atc") is None:
            return "atc is not on PATH (install CANN and source /usr/local/Ascend/ascend-toolkit/set_env.sh)"
        return self.open_unavailable_reason()

    def open_unavailable_reason(self):
        try:
            import ais_bench.infer.interface  # noqa: F401
        except ImportError as e:
            return f"ais_bench is not importable ({e}); see requirements-ascend.txt"
        chip, why = chip_name()
        return None if chip else why

    def precision_problem(self, precision):
        chip, _ = chip_name()
        if precision == "fp32" and chip == "310":
            return "the Ascend310's cube unit computes fp16 (or int8) only; force_fp32 is for the 310P and later"
        return None

    def version(self):
        home = os.environ.get("ASCEND_TOOLKIT_HOME") or os.environ.get("ASCEND_HOME_PATH") or ""
        for f in (Path(home) / "version.cfg", Path(home) / "compiler" / "version.info"):
            if home and f.is_file():
                m = re.search(r"(?:version|Version)\s*=\s*(\S+)", f.read_text())
                if m:
                    return m.group(1)
        return "unknown"

    def device(self) -> str | None:
        chip, _ = chip_name()
        return f"Ascend{chip}" if chip else None

    def artifact_settings(self, precision):
        return {**super().artifact_settings(precision), "soc": self.device()}

    def convert(self, source, out_dir, precision, shape):
        spec = source.spec
        chip, why = chip_name()
        if not chip:
            raise AtcError(why)
        onnx_path = source.onnx_path(self.opset)
        nodes = producer_nodes(onnx_path, spec.atc.out_nodes) if spec.atc.out_nodes else ()
        args = atc_command(spec, onnx_path, "model", shape, chip, precision, nodes)
        (out_dir / "atc_command.txt").write_text(" ".join(args) + "\n")
        run_atc(args, out_dir)

    def load(self, artifact_dir, source, precision):
        return AisSession(source.spec, artifact_dir / "model.om", precision, int(os.environ.get(DEVICE_ENV, "0")))

    def open(self, path, spec, precision, io):
        if Path(path).suffix != ".om":
            raise ValueError(f"{path}: an Ascend offline model is an .om file")
        return AisSession(spec, Path(path), precision, int(os.environ.get(DEVICE_ENV, "0")), io)
