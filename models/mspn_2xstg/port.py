"""Seed 002's port files (Ascend ModelZoo-PyTorch, ACL_PyTorch/contrib/cv/pose_estimation/MSPN, read for facts;
shared/reference/pipelines.md "The ports' own files"):

- MSPN_preprocess.py walks upstream's COCO val loader at batch 1 and writes one crop per person detection as
  ``img_<image_id>_<k>.bin`` (raw float32 1x3x256x192), k counting every crop from 0; no side file (the
  postprocess takes centres and scales from the same loader);
- MSPN_postprocess.py reads ``result/dumpOutput_device0/img_<image_id>_<k>_1.bin`` (float32 1x17x64x48): the
  older benchmark tool's 1-based output name. ais_bench, which the seed's README runs, writes ``_0``.

The audit numbers crops in the suite's sample order (by image, then detection score, best first); a loader
that orders an image's crops otherwise shows as files that differ.
"""
from __future__ import annotations

from models.mspn_2xstg import codec
from posegate.port.layout import OutputFile, PortLayout


def _stem(dataset, crop, index) -> str:
    return f"img_{int(crop['image_id'])}_{index}"


LAYOUT = PortLayout(
    profile="256x192",
    input_shape=(1, 3, codec.INPUT_H, codec.INPUT_W),
    stem=_stem,
    outputs=(OutputFile("output", (1, codec.NUM_JOINTS, codec.HEATMAP_H, codec.HEATMAP_W)),),
    index_base=1,
    traps={"index-base": "Seed 002's MSPN_postprocess.py reads img_<id>_<k>_1.bin, the older benchmark tool's "
                         "1-based name, while ais_bench (which its README runs) writes _0: this is the seed's trap"},
    source="Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/pose_estimation/MSPN/MSPN_{pre,post}process.py",
)
