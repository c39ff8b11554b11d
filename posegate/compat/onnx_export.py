"""torch.onnx.export's exporter choice. From torch 2.5 export takes ``dynamo=`` (docs.pytorch.org tutorial
"Introduction to ONNX": dynamo=True needs PyTorch 2.5.0 or newer), and from 2.9 its default is the
torch.export-based exporter, which writes no opset below 18. ATC reads opset 11: the suite asks for the
TorchScript exporter wherever the keyword exists, and passes nothing where that exporter is the only one."""
from __future__ import annotations

from posegate.compat import torch_release

DYNAMO_KEYWORD = (2, 5)


def exporter_keywords(have: tuple[int, int] | None = None) -> dict:
    """The keywords that select the TorchScript exporter on torch ``have``."""
    return {"dynamo": False} if (have or torch_release()) >= DYNAMO_KEYWORD else {}
