"""ONNX Runtime on the GPU: the CUDA and TensorRT execution providers, on the suite's ONNX file."""
from posegate.backends.onnxruntime_gpu.backend import OrtCudaBackend, OrtGpuSession, OrtTensorRtBackend

# what posegate.backends registers from this folder
BACKENDS = (OrtCudaBackend(), OrtTensorRtBackend())

__all__ = ["BACKENDS", "OrtCudaBackend", "OrtGpuSession", "OrtTensorRtBackend"]
