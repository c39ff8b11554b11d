"""NVIDIA TensorRT: engines from the ONNX export, its probe (marked outputs) and its advice (trtexec, builder)."""
from posegate.backends.tensorrt.backend import EngineBuildError, TensorRtBackend, TrtSession, build_engine

# what posegate.backends registers from this folder
BACKENDS = (TensorRtBackend(),)

__all__ = ["BACKENDS", "EngineBuildError", "TensorRtBackend", "TrtSession", "build_engine"]
