"""Minimal reproducers of a failing port (``--reduce``): the smallest subgraph of the exported ONNX that
shows the same failure on the same backend, fed with the torch reference's tensors, written as a bundle
``pytest --replay=DIR`` replays (``subgraph``, ``reference``, ``search``, ``runners``, ``bundle``)."""
from posegate.diagnosis.reduce.bundle import replay, same_failure, write
from posegate.diagnosis.reduce.reference import CannotReduce
from posegate.diagnosis.reduce.search import NOTHING, Reduction, budget, reduce

__all__ = ["NOTHING", "CannotReduce", "Reduction", "budget", "reduce", "replay", "same_failure", "write"]
