"""What the training loop needs of a model, handed over by the model's folder through its spec.

posegate never imports ``models``: a model the suite can train sets ``ModelSpec.training`` to a Recipe,
and the loop and the validation read it from there. Its callables are module-level functions (or
classes), so a TrainConfig carrying it pickles into DDP's spawned processes by reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from posegate.registry import MODELS


@dataclass(frozen=True)
class Recipe:
    network: Callable  # (refinement stages) -> the torch network in train mode
    preprocess: Callable  # (BGR image, codec profile name) -> (CHW float32 input, record)
    decode: Callable  # (heatmaps, pafs, record) -> COCO keypoint results (dicts) of one image
    val_profile: str = "upstream"  # the codec profile validation preprocesses with
    # each training step's best checkpoint under the name a weights dir holds it by (the training gate reads them)
    step_checkpoints: tuple[str, ...] = ()


def default_recipe(registry=None) -> Recipe:
    """The recipe of the one registered model that declares one; an error naming what is wrong otherwise."""
    registry = MODELS if registry is None else registry
    found = {name: spec.training for name, spec in registry.items() if spec.training is not None}
    if len(found) != 1:
        what = f"several ({sorted(found)}): pass TrainConfig.recipe" if found else \
            "none (no model registered yet: import models, or pass TrainConfig.recipe)"
        raise LookupError(f"training needs one model with a training recipe (ModelSpec.training); found {what}")
    return next(iter(found.values()))
