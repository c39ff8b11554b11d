"""ncnn (Tencent) on the CPU, converted by pnnx: a backend as one package.

Modules: ``backend`` (the Backend), ``session`` (running a .param/.bin), ``convert`` (pnnx and the
check of what it wrote), ``precision`` (what fp32 and fp16 ask and really compute), ``availability``
(the runtime and the converter) and ``probe`` (intermediate blobs for localisation).

No precision advice writer: ncnn's per-layer mask ``31=4`` (no bf16 storage) hands a masked layer the bf16
blob of the layer before it uncast (src/net.cpp convert_layout casts a 16-bit blob back to fp32 only when
the layer's masked option still has bf16 storage on); measured with pnnx 20261020 / ncnn 1.0.20261020 on
Lightweight OpenPose, every convolution masked: the process aborts (malloc_consolidate: invalid chunk size).
"""
from posegate.backends.ncnn.backend import NcnnBackend

# what posegate.backends registers from this folder
BACKENDS = (NcnnBackend(),)

__all__ = ["BACKENDS", "NcnnBackend"]
