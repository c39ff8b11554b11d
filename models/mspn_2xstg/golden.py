"""MSPN's golden decoder file (golden/decoders/README.md): per crop the heatmaps (and their mirror under
flip test) and the crop record upstream used, fed to the suite's crop decoder."""
from __future__ import annotations

import numpy as np

from posegate.golden.decoders import Comparison, DecoderGolden, compare_image


def records(data, case: str, codec):
    flip = bool(data[f"{case}/flip"])
    return [codec.CropRecord(int(i), int(hw[1]), int(hw[0]), tuple(c.tolist()), tuple(s.tolist()), float(d), flip)
            for i, hw, c, s, d in zip(data[f"{case}/image_id"], data[f"{case}/orig_hw"], data[f"{case}/center"],
                                      data[f"{case}/scale"], data[f"{case}/det_score"])]


def outputs(data, case: str) -> np.ndarray:
    maps = data[f"{case}/heatmaps"]
    return np.concatenate([maps, data[f"{case}/heatmaps_flipped"]]) if bool(data[f"{case}/flip"]) else maps


def compare(data, case: str, codec, decode=None) -> Comparison:
    decode = decode or codec.decode_crops
    results = decode(outputs(data, case), records(data, case, codec))
    cmp = Comparison()
    ref_kp, ref_score = data[f"{case}/keypoints"], data[f"{case}/score"]
    for i, (r, kp, s) in enumerate(zip(results, ref_kp, ref_score)):
        compare_image(cmp, f"{case} crop {i}", [r], kp[None], s[None])
    if len(results) != len(ref_kp):
        cmp.problems.append(f"{case}: {len(results)} results for {len(ref_kp)} crops")
    return cmp


DECODERS = DecoderGolden("mspn_2xstg.npz", ("gtbox_noise", "dets"), compare)
