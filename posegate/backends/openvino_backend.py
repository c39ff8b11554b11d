"""OpenVINO on the CPU: ONNX -> IR (FP32 or FP16-compressed weights) is this machine's real
counterpart of ATC's ONNX -> OM step."""
from __future__ import annotations

from posegate.backends.base import Backend, Session, SessionInfo

# What the CPU plugin computes in for each precision we ask for. fp32 must be pinned: on CPUs with
# BF16 support the plugin's default is bf16, which would make an "fp32" run silently lossy.
_HINTS = {"fp32": ["f32"], "fp16": ["f16", "bf16", "f32"]}


class OvSession(Session):
    def __init__(self, spec, xml, precision):
        import openvino as ov
        core = ov.Core()
        caps = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        hint = next(h for h in _HINTS[precision] if h == "f32" or h.upper() in caps)
        self._core, self._xml, self._config, self._static = core, str(xml), {"INFERENCE_PRECISION_HINT": hint}, {}
        self.compiled = core.compile_model(str(xml), "CPU", self._config)
        self.request = self.compiled.create_infer_request()
        names = [o.get_any_name() for o in self.compiled.outputs]
        self.order = [names.index(n) for n in spec.output_names]
        actual = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        super().__init__(spec, SessionInfo("openvino", precision, actual.get_type_name(),
                                           {"capabilities": sorted(caps)}))

    def _run(self, x):
        request = self._static_request(x.shape) if self.spec.per_shape_engines else self.request
        res = request.infer({self.spec.input_name: x})
        values = list(res.values())
        return [values[i] for i in self.order]

    def _static_request(self, shape):
        """A model compiled for exactly this input shape (the last few kept): the CPU plugin's
        dynamic path runs VideoPose3D's dilated 1D convolutions over a free frame axis ~15x slower."""
        if shape not in self._static:
            model = self._core.read_model(self._xml)
            model.reshape({self.spec.input_name: list(shape)})
            if len(self._static) >= 4:
                self._static.pop(next(iter(self._static)))
            self._static[shape] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        return self._static[shape]

    def close(self):
        self.request = self.compiled = None
        self._static = {}


class OpenVinoBackend(Backend):
    name = "openvino"
    precisions = ("fp32", "fp16")

    def unavailable_reason(self):
        try:
            import openvino  # noqa: F401
        except ImportError as e:
            return f"openvino is not importable ({e}); pip install openvino"
        return None

    def version(self):
        import openvino
        return openvino.__version__

    def convert(self, source, out_dir, precision, shape):
        import openvino as ov
        model = ov.convert_model(str(source.onnx_path(self.opset)))
        ov.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=(precision == "fp16"))

    def load(self, artifact_dir, source, precision):
        return OvSession(source.spec, artifact_dir / "model.xml", precision)
