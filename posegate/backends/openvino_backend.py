"""OpenVINO on the CPU: ONNX -> IR (FP32 or FP16-compressed weights) is this machine's real
counterpart of ATC's ONNX -> OM step; a supplied IR (an INT8 one included) opens as it is."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posegate.backends.base import Backend, ModelSource, Session, SessionInfo

# What the CPU plugin computes in for each precision we ask for. fp32 must be pinned: on CPUs with
# BF16 support the plugin's default is bf16, which would make an "fp32" run silently lossy. An INT8
# IR carries its quantisation in FakeQuantize nodes; what lies between them stays f32.
_HINTS = {"fp32": ["f32"], "fp16": ["f16", "bf16", "f32"], "int8": ["f32"]}


def cpu_hint(precision: str, caps) -> str:
    """The inference precision asked of a CPU with these OPTIMIZATION_CAPABILITIES for ``precision``."""
    return next(h for h in _HINTS.get(precision, ["f32"]) if h == "f32" or h.upper() in caps)


@dataclass(frozen=True)
class OpenVinoSettings:
    """What a model asks of OpenVINO beyond its IR: ``backend_settings={"openvino": OpenVinoSettings(...)}``."""
    # compile one static model per input shape met instead of running the dynamic graph (few distinct
    # shapes, a dynamic path that is much slower: VideoPose3D's free frame axis)
    per_shape_engines: bool = False


class OvSession(Session):
    def __init__(self, spec, xml, precision, io=None, settings: OpenVinoSettings = OpenVinoSettings()):
        import openvino as ov  # noqa: PLC0415 (optional engine, lazy)
        core = ov.Core()
        caps = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        hint = cpu_hint(precision, caps)
        self._core, self._xml, self._config, self._static = core, str(xml), {"INFERENCE_PRECISION_HINT": hint}, {}
        self._per_shape = settings.per_shape_engines
        self.compiled = core.compile_model(str(xml), "CPU", self._config)
        self.request = self.compiled.create_infer_request()
        actual = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        super().__init__(spec, SessionInfo("openvino", precision, actual.get_type_name(),
                                           {"capabilities": sorted(caps)}), io)
        names = [o.get_any_name() for o in self.compiled.outputs]
        missing = [n for n in self.io.engine_outputs if n not in names]
        # a supplied IR's interface check reports every difference at once; a run must not guess
        self.problem = f"{xml}: no outputs {missing}; the model has {names}" if missing else None
        self.order = None if missing else [names.index(n) for n in self.io.engine_outputs]

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
        return ({p.get_any_name(): dims(p) for p in self.compiled.inputs},
                {p.get_any_name(): dims(p) for p in self.compiled.outputs})

    def close(self):
        self.request = self.compiled = None
        self._static = {}


class OpenVinoBackend(Backend):
    name = "openvino"
    distributions = ("openvino",)
    settings_type = OpenVinoSettings
    settings_change_artifacts = False  # per-shape engines are compiled from the same IR when loading
    precisions = ("fp32", "fp16")

    def unavailable_reason(self):
        try:
            import openvino  # noqa: F401, PLC0415 (optional engine, lazy)
        except ImportError as e:
            return f"openvino is not importable ({e}); pip install openvino"
        return None

    def version(self):
        import openvino  # noqa: PLC0415 (optional engine, lazy)
        return openvino.__version__

    def convert(self, source, out_dir, precision, shape):
        import openvino as ov  # noqa: PLC0415 (optional engine, lazy)
        model = ov.convert_model(str(source.onnx_path(self.opset)))
        ov.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=(precision == "fp16"))

    def run_subgraph(self, onnx_path, feeds, precision, workdir):
        import openvino as ov  # noqa: PLC0415 (optional engine, lazy)
        self.convert(ModelSource(None, lambda: None, lambda opset: Path(onnx_path)), Path(workdir), precision, None)
        core = ov.Core()
        hint = cpu_hint(precision, set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))
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
            import openvino as ov  # noqa: PLC0415 (optional engine, lazy)
            hint = cpu_hint(precision, set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")))
        except ImportError:  # a bundle written where openvino is absent names the first hint the backend asks for
            hint = _HINTS.get(precision, ["f32"])[0]
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
