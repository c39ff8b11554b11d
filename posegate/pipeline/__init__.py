"""The stages of a port as lazily built, cached artifacts: ``Pipeline`` and the parts it composes.

- ``builds``: the reference network's weights, its exports (ONNX, TorchScript) and backend conversions;
- ``sessions``: engines loaded on converted or supplied models;
- ``batches``: a dataset's samples and preprocessed batches;
- ``predictions``: reference outputs, decoded results of whole datasets; ``shards`` splits and merges them;
- ``progress``: the progress line of long evaluations (training's validation uses it too);
- ``failures`` and ``origins``: the run's failed stages in one store (a failed build remembered once, a failed
  stage test seen by every worker), each build naming the stage test that builds it.
"""
from posegate.pipeline.batches import Batch
from posegate.pipeline.facade import Pipeline
from posegate.pipeline.failures import StageFailed, StageOutcomes

__all__ = ["Batch", "Pipeline", "StageFailed", "StageOutcomes"]
