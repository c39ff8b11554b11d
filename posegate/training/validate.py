"""Validation AP during training: the port's single-scale, height-368, last-stage evaluation."""
from __future__ import annotations

import torch

from posegate.metrics.coco_ap import evaluate_keypoints
from posegate.pipeline.progress import Progress
from posegate.training.recipe import Recipe, default_recipe

CPU = torch.device("cpu")


@torch.no_grad()
def predict(net: torch.nn.Module, dataset, image_ids=None, device=CPU,
            recipe: Recipe | None = None) -> list[dict]:
    """COCO keypoint results of ``net`` (its last stage) on a CocoKeypointDataset's images, pre- and
    post-processed by the model's recipe (the registered one by default)."""
    recipe = recipe or default_recipe()
    was_training = net.training
    net.eval()
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    results, progress = [], Progress(len(ids), "validation")
    try:
        for image_id in ids:
            x, record = recipe.preprocess(dataset.load_image(image_id), recipe.val_profile)
            out = net(torch.from_numpy(x)[None].to(device))
            heat, paf = (t[0].float().cpu().numpy() for t in out[-2:])
            for r in recipe.decode(heat, paf, record):
                results.append({"image_id": int(image_id), "category_id": 1, **r})
            progress.advance()
    finally:
        progress.close()
        net.train(was_training)
    return results


def validation_ap(net, dataset, image_ids=None, device=CPU, recipe: Recipe | None = None) -> float:
    """COCOeval keypoint AP (stats[0]); 0 when nothing is detected, as the port reports it."""
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    results = predict(net, dataset, ids, device, recipe)
    if not results:
        return 0.0
    return max(0.0, float(evaluate_keypoints(dataset, results, ids).ap))
