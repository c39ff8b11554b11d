"""ONNX Runtime on the CPU execution provider: the portable baseline of every port."""
from __future__ import annotations

import shutil

from posegate.backends.base import Backend, Session, SessionInfo
from posegate.backends.lazy import load, reason
from posegate.backends.probing import CannotLocalize, OrtProbe

INSTALL = "pip install onnxruntime"


def dims_of(shape) -> list:
    """ORT/OpenVINO shape -> ints, None where symbolic or dynamic."""
    return [d if isinstance(d, int) and d >= 0 else None for d in shape]


class OrtSession(Session):
    def __init__(self, spec, path, precision, io=None, providers=("CPUExecutionProvider",), provider_options=None,
                 backend="onnxruntime", execution="f32", log_severity=3, fallback=True):
        ort = load("onnxruntime", INSTALL)
        opts = ort.SessionOptions()
        opts.log_severity_level = log_severity  # 2 (warnings) where a provider's failure must be read
        kwargs = {"provider_options": provider_options} if provider_options else {}
        if not fallback:  # InferenceSession's own kwarg: no silent retry on the CPU (see ..onnxruntime_gpu)
            kwargs["enable_fallback"] = 0
        self.sess = ort.InferenceSession(str(path), opts, providers=list(providers), **kwargs)
        super().__init__(spec, SessionInfo(backend, precision, execution,
                                           {"providers": self.sess.get_providers()}), io)

    def _run(self, x):
        return self.sess.run(self.io.engine_outputs, {self.io.input: x})

    def signature(self):
        return ({i.name: dims_of(i.shape) for i in self.sess.get_inputs()},
                {o.name: dims_of(o.shape) for o in self.sess.get_outputs()})

    def close(self):
        self.sess = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    # one module, several distributions: the CPU wheel, the CUDA one, Intel's OpenVINO-EP one
    distributions = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")
    # The CPU provider has no fp16 kernels for these convolutions; fp16 belongs to the device backends.
    precisions = ("fp32",)
    artifact_suffixes = (".onnx",)

    def unavailable_reason(self):
        return reason("onnxruntime", INSTALL)

    def version(self):
        return load("onnxruntime", INSTALL).__version__

    def probe(self, pipeline, spec, path, io, precision):
        if path.suffix != ".onnx":
            raise CannotLocalize(f"{path}: onnxruntime localises ONNX files")
        return OrtProbe(path, io, precision)

    def convert(self, source, out_dir, precision, shape):
        shutil.copyfile(source.onnx_path(self.opset), out_dir / "model.onnx")

    def load(self, artifact_dir, source, precision):
        return OrtSession(source.spec, artifact_dir / "model.onnx", precision)

    def open(self, path, spec, precision, io):
        return OrtSession(spec, path, precision, io)

    def run_subgraph(self, onnx_path, feeds, precision, workdir):
        ort = load("onnxruntime", INSTALL)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, dict(feeds))))

    def subgraph_call(self, precision, feeds):
        return {"python": "onnxruntime.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])"
                          ".run(None, inputs)"}
