"""Ascend NPUs: ONNX -> OM through ATC (posegate.backends.ascend.atc), one OM per (batch, input shape), run
with ais_bench's InferSession. Timing is the NPU compute time ais_bench reports, which excludes
host<->device copies, as the seeds' figures do.

Written against ais_bench as Ascend's tools repository ships it (github.com/Ascend/tools,
ais-bench_workload/tool/ais_bench): ``ais_bench/infer/interface.py`` and aclruntime's C++
(``backend/python/src/PyInferenceSession/PyInferenceSession.cpp``,
``backend/base/module/ModelInfer/ModelInferenceProcessor.cpp``), in its 2023 release (sumary(),
modes static/dymdims/dymshape, an instance finalize() that ends ACL for the whole process, no
free_resource) and its later one (summary(), modes static/dymbatch/dymhw/dymdims/dymshape checked
against the OM's input dims, free_resource(), a static finalize()).
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import onnx

from posegate.backends.ascend.advice import write as write_advice
from posegate.backends.ascend.atc import (
    HF32_LOG_KEY,
    AtcError,
    AtcSettings,
    atc_command,
    execution,
    fp32_flags,
    hf32_off_in,
    producer_nodes,
    run_atc,
    subgraph_command,
    written_om,
)
from posegate.backends.ascend.probe import AscendProbe
from posegate.backends.base import Backend, Session, SessionInfo
from posegate.backends.lazy import load, reason
from posegate.backends.npu import DEVICE_ENV, AscendChip, chip_name, computes_fp32
from posegate.backends.probing import CannotLocalize, device_source

ATC_OPSET = 11  # seed 001: ATC supports ONNX opset 11
INSTALL = "see requirements-ascend.txt"
EXECUTION_FILE = "execution.txt"  # what the built OM computes in, as the ATC run showed it
# ais_bench's path check, as the later ais_bench runs it on InferSession's model_path (interface.py calls
# interface_check.check_model_path_legality -> common/path_security_check.py check_path_legality with
# perm READ, suffix ["om"]; the 2023-2025 file of Ascend's tools repo, ais-bench_workload/tool/ais_bench):
# FileStat takes os.path.abspath, refuses a path over 4096 characters or with a component over 255, any
# character outside PATH_WHITE_LIST_REGEX, a missing path, a symlink (os.path.islink), an owner that is
# neither the process's euid nor one of its groups, READ_FILE_NOT_PERMITTED_STAT (S_IWGRP | S_IWOTH) and a
# file its owner cannot read. The 2023 release checks none of this; the suite applies them for both.
AIS_PATH_CHARS = re.compile(r"[^_A-Za-z0-9/.-]")
AIS_MAX_PATH, AIS_MAX_NAME = 4096, 255
# Issue 25 names "at most 32 '/'" among ais_bench's rules; no ais_bench source read for it has that rule
# (path_security_check.py, interface_check.py, aclruntime's C++): refused here anyway, the cheaper mistake.
AIS_MAX_SLASHES = 32


# -------------------------------------------------------------------------------------- ais_bench

def durations_ms(entries) -> list[float]:
    """ais_bench's per-call compute times: aclruntime's exec_time_list holds one float per call, the ms
    gettimeofday measured around aclmdlExecute (InferSumaryInfo::execTimeList, std::vector<float>);
    (start, end) pairs in ms are read too."""
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


def infer_mode(om_input_shape) -> str:
    """ais_bench's mode for an OM input, from which of its axes are dynamic (-1).

    ais_bench's dymhw accepts only an input whose dims 2 and 3 are both -1 (--dynamic_image_size),
    raising "not a dymhw model!" otherwise; a --dynamic_dims OM needs dymdims; dymbatch a batch gear."""
    free = [i for i, d in enumerate(om_input_shape) if d is None or (isinstance(d, int) and d < 0)]
    if not free:
        return "static"
    if free == [0]:
        return "dymbatch"
    if len(om_input_shape) == 4 and free == [2, 3]:
        return "dymhw"
    return "dymdims"


def ais_path_problem(path) -> str | None:
    """Why ais_bench's InferSession would refuse this model path (None: it accepts it)."""
    text = os.path.abspath(str(path))
    if len(text) > AIS_MAX_PATH or any(len(part) > AIS_MAX_NAME for part in text.split("/")):
        return f"{path}: ais_bench refuses a path over {AIS_MAX_PATH} characters or a name over {AIS_MAX_NAME}"
    bad = sorted(set(AIS_PATH_CHARS.findall(text)))
    if bad:
        return f"{path}: ais_bench accepts only [A-Za-z0-9_/.-] in a model path; it has {bad}"
    if text.count("/") > AIS_MAX_SLASHES:
        return (f"{path}: {text.count('/')} '/' in the absolute path; ais_bench is said to take at most "
                f"{AIS_MAX_SLASHES} (a shallower --cache-dir helps)")
    if os.path.islink(text):
        return f"{path}: ais_bench refuses a model path that is a symlink; pass the file it points to"
    try:
        st = os.stat(text)
    except OSError as e:
        return f"{path}: {e.strerror}"
    if st.st_uid != os.geteuid() and st.st_gid not in os.getgroups():
        return f"{path}: ais_bench refuses a file neither owned by this user nor by one of its groups (uid {st.st_uid})"
    if not st.st_mode & stat.S_IRUSR or not os.access(os.path.realpath(text), os.R_OK):
        return f"{path}: ais_bench refuses a model its owner or this user cannot read; chmod u+r"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{path}: ais_bench refuses a group- or other-writable model (mode {stat.filemode(st.st_mode)}); "
                "chmod go-w")
    return None


class AclProcess:
    """ACL is initialised once per process and must be finalised once, after the last session.

    The 2023 ais_bench has no free_resource, and its finalize() calls aclFinalize for the whole
    process, which would kill every other cached session; dropping a session's last reference
    unloads its model (~PyInferenceSession -> Destroy). So a closed old-style session is only
    dropped, but the last one is kept to call its finalize() at exit; the later ais_bench's static
    InferSession.finalize() needs no session."""

    def __init__(self, register=atexit.register):
        self.register = register
        self.registered = False
        self.finalize = None  # the later API's static finalize
        self.anchor = None  # the 2023 API: the last closed session, whose finalize() ends ACL

    def opened(self, infer_session):
        if not self.registered:
            self.register(self.release)
            self.registered = True
        if callable(getattr(infer_session, "free_resource", None)):
            self.finalize = getattr(type(infer_session), "finalize", None)

    def closed(self, infer_session):
        if callable(getattr(infer_session, "free_resource", None)):
            infer_session.free_resource()
        else:
            self.anchor = infer_session  # the previous anchor's model is unloaded as it is dropped

    def release(self):
        anchor, finalize, self.anchor, self.finalize = self.anchor, self.finalize, None, None
        if anchor is not None and callable(getattr(anchor, "finalize", None)):
            anchor.finalize()
        elif finalize is not None:
            finalize()


ACL = AclProcess()


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
    def __init__(self, spec, om: Path, precision: str, device_id: int, io=None, infer_session=None,
                 execution_name=None, process=None, precision_problem=None):
        problem = ais_path_problem(om)
        if problem:
            raise ValueError(problem)
        if infer_session is None:
            infer_session = load("ais_bench.infer.interface", INSTALL, shown_as="ais_bench").InferSession
        self.process = process or ACL
        self.sess = infer_session(device_id, str(om))
        self.process.opened(self.sess)
        super().__init__(spec, SessionInfo("ascend", precision, execution_name or precision,
                                           {"om": str(om), "device_id": device_id},
                                           precision_problem=precision_problem), io)
        ins, outs = self.signature()
        self.mode = infer_mode(next(iter(ins.values())))
        # the 2023 release knows static/dymdims/dymshape only, and runs any other mode as static
        self.old_api = not callable(getattr(self.sess, "free_resource", None))
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

    def _infer(self, x):
        if not self.old_api or self.mode in ("static", "dymdims"):
            return self.sess.infer([x], mode=self.mode)
        # what the later release's _dymhw_prepare / _dymbatch_prepare do, by hand, then a plain run
        if self.mode == "dymhw":
            self.sess.set_dynamic_hw(x.shape[2], x.shape[3])
        else:
            self.sess.set_dynamic_batchsize(x.shape[0])
        return self.sess.infer([x], mode="static")

    def _run(self, x):
        if self.problem:
            raise ValueError(self.problem)
        _call_first(self.sess, ("reset_summaryinfo", "reset_sumaryinfo"))
        outs = self._infer(x)
        summary = _call_first(self.sess, ("summary", "sumary"))
        self.device_ms += durations_ms(getattr(summary, "exec_time_list", ()))
        outs = [_to_numpy(o) for o in outs]
        return [outs[i] for i in self.order]

    def close(self):
        if self.sess is not None:
            self.process.closed(self.sess)  # never finalize here: that ends ACL for every session
        self.sess = None


class AscendBackend(AscendChip, Backend):
    name = "ascend"
    distributions = ("ais_bench",)
    settings_type = AtcSettings
    precisions = ("fp16", "fp32")
    reduced = ("fp16",)
    static_shapes = True
    opset = ATC_OPSET
    artifact_suffixes = (".om",)

    def unavailable_reason(self):
        if shutil.which("atc") is None:
            return "atc is not on PATH (install CANN and source /usr/local/Ascend/ascend-toolkit/set_env.sh)"
        return self.open_unavailable_reason()

    def open_unavailable_reason(self):
        missing = reason("ais_bench.infer.interface", INSTALL, shown_as="ais_bench")
        if missing:
            return missing
        chip, why = chip_name()
        return None if chip else why

    def probe(self, pipeline, spec, path, io, precision):
        source = device_source(self, pipeline, spec, path)
        chip, why = chip_name()
        if chip is None:
            raise CannotLocalize(f"ascend: no chip to build for ({why})")
        return AscendProbe(source, io, precision, spec, chip=chip, session=AisSession,
                           settings=self.settings_of(spec))

    def write_advice(self, keep, folder, modules, ir=None):
        return write_advice(keep, folder, modules)

    def version(self):
        home = os.environ.get("ASCEND_TOOLKIT_HOME") or os.environ.get("ASCEND_HOME_PATH") or ""
        for f in (Path(home) / "version.cfg", Path(home) / "compiler" / "version.info"):
            if home and f.is_file():
                m = re.search(r"(?:version|Version)\s*=\s*(\S+)", f.read_text())
                if m:
                    return m.group(1)
        return "unknown"

    def artifact_settings(self, precision, spec=None):
        fields = {**super().artifact_settings(precision, spec), "soc": self.device()}
        chip = chip_name()[0]
        if precision == "fp32" and chip:  # an OM built before --allow_hf32=false must not answer for one after
            fields["precision_flags"] = fp32_flags(chip)
        return fields

    def convert(self, source, out_dir, precision, shape):
        spec = source.spec
        chip, why = chip_name()
        if not chip:
            raise AtcError(why)
        problem = ais_path_problem(out_dir)  # fail before ATC's minutes, not at the first load
        if problem and "writable" not in problem:
            raise AtcError(f"the artifact cache cannot hold OMs for ais_bench: {problem}")
        onnx_path = source.onnx_path(self.opset)
        settings = self.settings_of(spec)
        nodes = producer_nodes(onnx_path, settings.out_nodes) if settings.out_nodes else ()
        args = atc_command(spec, onnx_path, "model", shape, chip, precision, nodes, settings)
        (out_dir / "atc_command.txt").write_text(" ".join(args) + "\n")
        run_atc(args, out_dir)
        hf32_off = hf32_off_in((out_dir / "atc.log").read_text()) if computes_fp32(chip) else None
        (out_dir / EXECUTION_FILE).write_text(execution(chip, precision, hf32_off) + "\n")

    def load(self, artifact_dir, source, precision):
        om = written_om(artifact_dir, "model")
        if om is None:
            raise AtcError(f"{artifact_dir}: no model.om or model_<os>_<cpu>.om; it holds "
                           f"{sorted(p.name for p in artifact_dir.iterdir())}")
        marker = artifact_dir / EXECUTION_FILE
        name = marker.read_text().strip() if marker.is_file() else execution(chip_name()[0], precision)
        problem = None
        if precision == "fp32" and name == "hf32":
            problem = (f"ascend fp32 computes Conv in HF32 (ATC's --allow_hf32 defaults to it on Atlas A2/A3): "
                       f"{artifact_dir / 'atc.log'} does not show {HF32_LOG_KEY} after --allow_hf32=false")
        return AisSession(source.spec, om, precision, int(os.environ.get(DEVICE_ENV, "0")),
                          execution_name=name, precision_problem=problem)

    def run_subgraph(self, onnx_path, feeds, precision, workdir, infer_session=None):
        """ATC with every input static at its feed's shape, then one ais_bench InferSession.infer on the
        feeds as a list in the OM's input order (ais_bench interface.py: infer(feeds, mode="static"); Ascend's
        ait benchmark API guide and its add_model samples feed two inputs as [ndata0, ndata1])."""
        chip, why = chip_name()
        if not chip:
            raise AtcError(why)
        settings = AtcSettings()  # a subgraph has no spec; the backend's defaults (log level) apply
        shapes = {n: a.shape for n, a in feeds.items()}
        run_atc(subgraph_command(onnx_path, "model", shapes, chip, precision, settings), Path(workdir))
        om = written_om(Path(workdir), "model")
        problem = ais_path_problem(om)
        if problem:
            raise ValueError(problem)
        if infer_session is None:
            infer_session = load("ais_bench.infer.interface", INSTALL, shown_as="ais_bench").InferSession
        sess = infer_session(int(os.environ.get(DEVICE_ENV, "0")), str(om))
        ACL.opened(sess)
        try:
            names = [i.name for i in sess.get_inputs()]
            unmatched = sorted(set(names) ^ set(feeds))
            if unmatched:
                raise ValueError(f"{om}: OM inputs {names}, feeds {list(feeds)}: {unmatched} unmatched")
            outs = [_to_numpy(o) for o in sess.infer([np.ascontiguousarray(feeds[n]) for n in names], mode="static")]
            wanted = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
            order = match_outputs([o.name for o in sess.get_outputs()], wanted)
        finally:
            ACL.closed(sess)  # never finalize here: that ends ACL for every session
        return {w: outs[i] for w, i in zip(wanted, order)}

    def subgraph_call(self, precision, feeds):
        chip = chip_name()[0] or "<chip>"
        return {"command": subgraph_command("model.onnx", "model", {n: a.shape for n, a in feeds.items()}, chip,
                                            precision)}

    def open(self, path, spec, precision, io):
        if Path(path).suffix != ".om":
            raise ValueError(f"{path}: an Ascend offline model is an .om file")
        return AisSession(spec, Path(path), precision, int(os.environ.get(DEVICE_ENV, "0")), io,
                          execution_name=f"{precision} as supplied (ATC precision mode unknown)")
