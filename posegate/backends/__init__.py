"""Backend registry: the only list of backends. Accelerator backends register here too."""
from __future__ import annotations

from posegate.backends.ascend_backend import AscendBackend
from posegate.backends.base import Backend, EngineIO, ModelSource, Session, SessionInfo
from posegate.backends.onnxruntime_backend import OnnxRuntimeBackend
from posegate.backends.onnxruntime_gpu_backend import OrtCudaBackend, OrtTensorRtBackend
from posegate.backends.openvino_backend import OpenVinoBackend
from posegate.backends.tensorrt_backend import TensorRtBackend
from posegate.backends.torch_aie_backend import TorchAieBackend
from posegate.backends.torch_backend import TorchBackend
from posegate.backends.torch_compile_backend import TorchCompileBackend
from posegate.backends.torchscript_backend import TorchScriptBackend

BACKENDS: dict[str, Backend] = {b.name: b for b in (TorchBackend(), TorchScriptBackend(), TorchCompileBackend(),
                                                    OnnxRuntimeBackend(), OpenVinoBackend(), AscendBackend(),
                                                    TorchAieBackend(), TensorRtBackend(), OrtCudaBackend(),
                                                    OrtTensorRtBackend())}
REFERENCE = "torch"

__all__ = ["BACKENDS", "REFERENCE", "Backend", "EngineIO", "ModelSource", "Session", "SessionInfo"]
