"""Ascend NPUs through TorchAIE (seed 000): the trace compiled by torch_aie, run through torch_npu."""
from posegate.backends.torch_aie.backend import TorchAieBackend, TorchAieSession

# what posegate.backends registers from this folder
BACKENDS = (TorchAieBackend(),)

__all__ = ["BACKENDS", "TorchAieBackend", "TorchAieSession"]
