"""ONNX Runtime on the GPU: the CUDA and TensorRT execution providers, on the same ONNX file.

ONNX Runtime falls back to the CPU silently when a provider cannot start, so a session that did not
get the provider it asked for is an error, not a slow pass. run() copies outputs back to the host,
which synchronises the device.
"""
from __future__ import annotations

import shutil

from posegate.backends.base import Backend
from posegate.backends.nvidia import cuda_device, seed_device_name, shape_range
from posegate.backends.onnxruntime_backend import OrtSession


def trt_provider_options(spec, precision: str) -> dict:
    low, opt, high = shape_range(spec)

    def fmt(shape):
        return f"{spec.input_name}:" + "x".join(str(d) for d in shape)
    return {"trt_fp16_enable": precision == "fp16", "trt_profile_min_shapes": fmt(low),
            "trt_profile_opt_shapes": fmt(opt), "trt_profile_max_shapes": fmt(high)}


class OrtGpuBackend(Backend):
    provider = ""

    def unavailable_reason(self):
        try:
            import onnxruntime
        except ImportError as e:
            return f"onnxruntime is not importable ({e})"
        if self.provider not in onnxruntime.get_available_providers():
            return (f"this onnxruntime ({onnxruntime.__version__}) has no {self.provider}; "
                    "pip install -r requirements-nvidia.txt (onnxruntime-gpu)")
        gpu, why = cuda_device()
        return None if gpu else why

    def version(self):
        import onnxruntime
        return onnxruntime.__version__

    def device(self):
        return seed_device_name(cuda_device()[0])

    def convert(self, source, out_dir, precision, shape):
        shutil.copyfile(source.onnx_path(self.opset), out_dir / "model.onnx")

    def options(self, spec, precision) -> dict:
        return {}

    def _session(self, spec, path, precision, io=None):
        session = OrtSession(spec, path, precision, io, providers=(self.provider, "CPUExecutionProvider"),
                             provider_options=[self.options(spec, precision), {}], backend=self.name,
                             execution=precision)
        got = session.info.details["providers"]
        if not got or got[0] != self.provider:
            session.close()
            raise RuntimeError(f"{self.name}: onnxruntime started {got}, not {self.provider}")
        return session

    def load(self, artifact_dir, source, precision):
        return self._session(source.spec, artifact_dir / "model.onnx", precision)

    def open(self, path, spec, precision, io):
        return self._session(spec, path, precision, io)


class OrtCudaBackend(OrtGpuBackend):
    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32",)  # fp16 on this provider needs an fp16 model; TensorRT covers fp16


class OrtTensorRtBackend(OrtGpuBackend):
    name = "onnxruntime-trt"
    provider = "TensorrtExecutionProvider"
    precisions = ("fp32", "fp16")

    def options(self, spec, precision):
        return trt_provider_options(spec, precision)
