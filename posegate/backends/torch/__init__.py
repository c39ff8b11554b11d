"""The reference: the PyTorch module itself (fp32; CUDA where torch sees a GPU, else CPU)."""
from posegate.backends.torch.backend import TorchBackend, TorchSession

# what posegate.backends registers from this folder
BACKENDS = (TorchBackend(),)

__all__ = ["BACKENDS", "TorchBackend", "TorchSession"]
