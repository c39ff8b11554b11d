"""Lightweight OpenPose's golden decoder file (golden/decoders/README.md): per image the heatmaps, PAFs and
padding upstream's demo used, fed to the suite's decoder."""
from __future__ import annotations

from posegate.golden.decoders import Comparison, DecoderGolden, compare_image, per_image


def record(data, case: str, k: int, codec):
    top, left, bottom, right = (int(v) for v in data[f"{case}/pad"][k])
    in_h, in_w = (int(v) for v in data[f"{case}/input_hw"][k])
    h, w = (int(v) for v in data[f"{case}/orig_hw"][k])
    return codec.PadRecord(h, w, float(data[f"{case}/scale"][k]), in_h - top - bottom, in_w - left - right,
                           top, bottom, left, right)


def compare(data, case: str, codec, decode=None) -> Comparison:
    decode = decode or codec.decode
    cmp = Comparison()
    for k, image_id, ref_kp, ref_score in per_image(data, case):
        results = decode(data[f"{case}/heatmaps/{k}"], data[f"{case}/pafs/{k}"], record(data, case, k, codec),
                         int(data[f"{case}/stride"][k]))
        compare_image(cmp, f"{case} image {image_id}", results, ref_kp, ref_score)
    return cmp


DECODERS = DecoderGolden("lightweight_openpose.npz", ("real", "real_noise", "oracle"), compare)
