"""TorchScript: the export stage's trace, frozen and optimised for inference."""
from posegate.backends.torchscript.backend import TorchScriptBackend

# what posegate.backends registers from this folder
BACKENDS = (TorchScriptBackend(),)

__all__ = ["BACKENDS", "TorchScriptBackend"]
