"""torch.compile (inductor): one static graph per engine shape, cached in the artifact cache."""
from posegate.backends.torch_compile.backend import CACHE_ENVS, TorchCompileBackend, inductor_cache

# what posegate.backends registers from this folder
BACKENDS = (TorchCompileBackend(),)

__all__ = ["BACKENDS", "CACHE_ENVS", "TorchCompileBackend", "inductor_cache"]
