"""Lightweight OpenPose training, reproducing the upstream train.py and the Ascend training port.

Facts: shared/reference/pipelines.md sections 1 and 5. Modules: labels (COCO annotations -> prepared
labels), augment (the upstream transform chain), targets (heatmaps, PAFs, masks), data (dataset and
the persistent, resumable loader), loss, optim (parameter groups, schedule), checkpoints (both
layouts, loading by key and shape), distributed (DDP, AMP), validate (AP), loop (the trainer) and
``python -m posegate.training`` (the command).
"""
