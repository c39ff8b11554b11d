"""ONNX Runtime on the CPU: the portable baseline; localises ONNX files (posegate.backends.probing.OrtProbe)."""
from posegate.backends.onnxruntime.backend import OnnxRuntimeBackend, OrtSession, dims_of

# what posegate.backends registers from this folder
BACKENDS = (OnnxRuntimeBackend(),)

__all__ = ["BACKENDS", "OnnxRuntimeBackend", "OrtSession", "dims_of"]
