"""ONNX Runtime on the CPU execution provider: the portable baseline of every port."""
from __future__ import annotations

import shutil

from posegate.backends.base import Backend, Session, SessionInfo


class OrtSession(Session):
    def __init__(self, spec, path, precision):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        super().__init__(spec, SessionInfo("onnxruntime", precision, "f32",
                                           {"providers": self.sess.get_providers()}))

    def _run(self, x):
        return self.sess.run(list(self.spec.output_names), {self.spec.input_name: x})

    def close(self):
        self.sess = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    # The CPU provider has no fp16 kernels for these convolutions; fp16 belongs to the device backends.
    precisions = ("fp32",)

    def unavailable_reason(self):
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            return f"onnxruntime is not importable ({e}); pip install onnxruntime"
        return None

    def version(self):
        import onnxruntime
        return onnxruntime.__version__

    def convert(self, source, out_dir, precision, shape):
        shutil.copyfile(source.onnx_path(self.opset), out_dir / "model.onnx")

    def load(self, artifact_dir, source, precision):
        return OrtSession(source.spec, artifact_dir / "model.onnx", precision)
