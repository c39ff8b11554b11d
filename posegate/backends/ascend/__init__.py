"""Ascend NPUs through ATC and ais_bench: backend, ATC command line, probe (--out_nodes) and advice (--keep_dtype)."""
from posegate.backends.ascend.atc import AtcError, AtcSettings
from posegate.backends.ascend.backend import AisSession, AscendBackend

# what posegate.backends registers from this folder
BACKENDS = (AscendBackend(),)

__all__ = ["BACKENDS", "AisSession", "AscendBackend", "AtcError", "AtcSettings"]
