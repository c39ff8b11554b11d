"""PyTorch -> ONNX and PyTorch -> TorchScript, with the checks every converter downstream relies on."""
