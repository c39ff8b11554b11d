"""Seed 001's port files (Ascend ModelZoo-PyTorch, ACL_PyTorch/contrib/cv/pose_estimation/HigherHRNet, read for
facts; shared/reference/pipelines.md "The ports' own files" and section 2):

- HigherHRNet_preprocess.py walks the test data loader (COCO val, image ids sorted) and names each file by the
  loader's index, not the image id: ``{idx:012d}.npy`` (np.save, float32 1x3xHxW, ImageNet mean/std on RGB),
  H and W snapped to one of the 17 buckets of the seed's ATC command per image; the horizontally flipped copy
  goes to a second folder under the same name;
- ais_bench (``--outfmt NPY --output_dirname``) writes ``{idx:012d}_0.npy`` (1x34xH/4xW/4) and ``_1.npy``
  (1x17xH/2xW/2) for each folder; HigherHRNet_postprocess.py reads both (``--dump_dir``, ``--dump_dir_flip``).

With ``--port``: ``inputs`` and ``inputs-flip`` are the two preprocess folders, ``outputs`` and
``outputs-flip`` the two device runs'.
"""
from __future__ import annotations

from models.higherhrnet_w32_512 import codec
from posegate.port.layout import OutputFile, PortLayout

_INDEX: dict[str, dict] = {}


def _stem(dataset, image_id, index) -> str:
    # the loader's index among the dataset's sorted image ids, whichever samples the audit takes
    if dataset.identity not in _INDEX:
        _INDEX[dataset.identity] = {i: n for n, i in enumerate(sorted(int(i) for i in dataset.image_ids))}
    return f"{_INDEX[dataset.identity][int(image_id)]:012d}"


LAYOUT = PortLayout(
    profile="HxW-ascend",
    input_shape=None,
    input_shapes=tuple((1, 3, h, w) for h, w in codec.BUCKETS),
    stem=_stem,
    outputs=(OutputFile("out_quarter", lambda s: (1, 2 * codec.NUM_JOINTS, s[2] // 4, s[3] // 4)),
             OutputFile("out_half", lambda s: (1, codec.NUM_JOINTS, s[2] // 2, s[3] // 2))),
    input_suffix=".npy",
    output_suffix=".npy",
    copies=("flip",),
    source="Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/pose_estimation/HigherHRNet/"
           "HigherHRNet_{pre,post}process.py, README (ais_bench --outfmt NPY)",
)
