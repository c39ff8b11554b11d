"""OpenVINO on the CPU: ONNX -> IR (FP32 or FP16-compressed weights) is this machine's real
counterpart of ATC's ONNX -> OM step; a supplied IR (an INT8 one included) opens as it is."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posegate.backends.base import Backend, EngineIO, ModelSource, Session, SessionInfo
from posegate.backends.lazy import load, reason
from posegate.backends.openvino.advice import IrValidator
from posegate.backends.openvino.advice import write as write_advice
from posegate.backends.openvino.precision import HINTS, inference_hint
from posegate.backends.openvino.probe import OvProbe

INSTALL = "pip install openvino"

@dataclass(frozen=True)
class OpenVinoSettings:
    """What a model asks of OpenVINO beyond its IR: ``backend_settings={"openvino": OpenVinoSettings(...)}``."""
    # compile one static model per input shape met instead of running the dynamic graph (few distinct
    # shapes, a dynamic path that is much slower: VideoPose3D's free frame axis)
    per_shape_engines: bool = False


class OvSession(Session):
    def __init__(self, spec, xml, precision, io=None, settings: OpenVinoSettings = OpenVinoSettings()):
        core = load("openvino", INSTALL).Core()
        caps = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        hint = inference_hint(precision, core)
        self._core, self._xml, self._config, self._static = core, str(xml), {"INFERENCE_PRECISION_HINT": hint}, {}
        self._per_shape = settings.per_shape_engines
        self.compiled = core.compile_model(self._model_to_compile(spec, io), "CPU", self._config)
        self.request = self.compiled.create_infer_request()
        actual = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        super().__init__(spec, SessionInfo("openvino", precision, actual.get_type_name(),
                                           {"capabilities": sorted(caps)}), io)
        names = [o.get_any_name() for o in self.compiled.outputs]
        missing = [n for n in self.io.engine_outputs if n not in names]
        # a supplied IR's interface check reports every difference at once; a run must not guess
        self.problem = f"{xml}: no outputs {missing}; the model has {names}" if missing else None
        self.order = None if missing else [names.index(n) for n in self.io.engine_outputs]

    def _model_to_compile(self, spec, io):
        """The IR as read, or, for per-shape engines, reshaped to the first profile's concrete input: the
        outputs and the precision actually used are read off this engine. OpenVINO up to 2024.4 cannot
        compile VideoPose3D's free frame axis at all (shape inference bounds it below the 163-frame dilated
        kernel of layers_conv.6), so a per-shape model never compiles its dynamic form."""
        if not self._per_shape:
            return self._xml
        model = self._core.read_model(self._xml)
        model.reshape({(io or EngineIO.of(spec)).input: [1, *spec.profiles[0].concrete_dims]})
        return model

    def _run(self, x):
        if self.problem:
            raise ValueError(self.problem)
        request = self._static_request(x.shape) if self._per_shape else self.request
        res = request.infer({self.io.input: x})
        values = list(res.values())
        return [values[i] for i in self.order]

    def _static_request(self, shape):
        """A model compiled for exactly this input shape (the last few kept): the CPU plugin's
        dynamic path runs VideoPose3D's dilated 1D convolutions over a free frame axis ~15x slower."""
        if shape not in self._static:
            model = self._core.read_model(self._xml)
            model.reshape({self.io.input: list(shape)})
            if len(self._static) >= 4:
                self._static.pop(next(iter(self._static)))
            self._static[shape] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        return self._static[shape]

    def signature(self):
        def dims(port):
            return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        # the IR's own signature: a per-shape session's compiled engine has one concrete shape
        model = self._core.read_model(self._xml) if self._per_shape else self.compiled
        return ({p.get_any_name(): dims(p) for p in model.inputs},
                {p.get_any_name(): dims(p) for p in model.outputs})

    def close(self):
        self.request = self.compiled = None
        self._static = {}


class OpenVinoBackend(Backend):
    name = "openvino"
    distributions = ("openvino",)
    settings_type = OpenVinoSettings
    settings_change_artifacts = False  # per-shape engines are compiled from the same IR when loading
    precisions = ("fp32", "fp16")
    calibrated = ("int8",)  # a supplied INT8 IR (Open Model Zoo's): quantised on real images
    reduced = ("fp16",)
    artifact_suffixes = (".xml",)

    def unavailable_reason(self):
        return reason("openvino", INSTALL)

    def version(self):
        return load("openvino", INSTALL).__version__

    def probe(self, pipeline, spec, path, io, precision):
        path = Path(path)
        if path.is_dir():
            path = next(iter(sorted(path.glob("*.xml"))), path)
        return OvProbe(path, io, precision)

    def advice_validator(self, precision):
        return IrValidator(inference_hint(precision))

    def write_advice(self, keep, folder, modules, ir=None):
        return write_advice(keep, folder, modules, ir)

    def convert(self, source, out_dir, precision, shape):
        ov = load("openvino", INSTALL)
        model = ov.convert_model(str(source.onnx_path(self.opset)))
        ov.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=(precision == "fp16"))

    def run_subgraph(self, onnx_path, feeds, precision, workdir):
        self.convert(ModelSource(None, lambda: None, lambda opset: Path(onnx_path)), Path(workdir), precision, None)
        core = load("openvino", INSTALL).Core()
        hint = inference_hint(precision, core)
        compiled = core.compile_model(str(Path(workdir) / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": hint})
        result = compiled.create_infer_request().infer(dict(feeds))
        out = {}
        for port, value in zip(compiled.outputs, result.values()):
            for name in port.get_names():
                out[name] = np.array(value)
        return out

    def subgraph_call(self, precision, feeds):
        # as convert and OvSession build and load it: fp16 weights compressed, the CPU hint pinned
        try:
            hint = inference_hint(precision)
        except ImportError:  # a bundle written where openvino is absent names the first hint the backend asks for
            hint = HINTS.get(precision, ["f32"])[0]
        return {"command": ["ovc", "model.onnx", "--output_model", "model.xml",
                            f"--compress_to_fp16={precision == 'fp16'}"],
                "python": f"ov.Core().compile_model('model.xml', 'CPU', {{'INFERENCE_PRECISION_HINT': {hint!r}}})"}

    def load(self, artifact_dir, source, precision):
        return OvSession(source.spec, artifact_dir / "model.xml", precision, settings=self.settings_of(source.spec))

    def supplied_path_problem(self, path):
        """An IR: its .xml file with the .bin beside it, or a folder holding exactly one such .xml."""
        path = Path(path)
        if path.is_dir():
            xmls = sorted(path.glob("*.xml"))
            if len(xmls) != 1:
                return f"expected one IR .xml file in the folder, found {[p.name for p in xmls]}"
            path = xmls[0]
        if not path.is_file() or path.suffix != ".xml" or not path.with_suffix(".bin").is_file():
            return "an OpenVINO IR is a .xml file with its .bin beside it (or a folder holding one)"
        return None

    def open(self, path, spec, precision, io):
        path = Path(path)
        problem = self.supplied_path_problem(path)
        if problem:
            raise ValueError(f"{path}: {problem}")
        if path.is_dir():
            path = next(path.glob("*.xml"))
        return OvSession(spec, path, precision, io, self.settings_of(spec))
