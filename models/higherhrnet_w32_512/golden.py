"""HigherHRNet's golden decoder file (golden/decoders/README.md): per image the flip-test pair of outputs
and the affine record upstream's transform used, fed to the suite's decoder."""
from __future__ import annotations

from posegate.golden.decoders import Comparison, DecoderGolden, compare_image, per_image


def compare(data, case: str, codec, decode=None) -> Comparison:
    decode = decode or codec.decode
    cmp = Comparison()
    for k, image_id, ref_kp, ref_score in per_image(data, case):
        if not data[f"{case}/flip"][k]:
            raise ValueError(f"{case} image {image_id}: the suite's decoder always takes the flip-test pair")
        (h, w), (in_h, in_w) = data[f"{case}/orig_hw"][k], data[f"{case}/input_hw"][k]
        center = tuple(int(v) for v in data[f"{case}/center"][k])
        scale = tuple(float(v) for v in data[f"{case}/scale"][k])
        stratum = codec.stratum(int(h), int(w))
        record = codec.AffineRecord(int(h), int(w), center, scale, int(in_h), int(in_w), stratum)
        results = decode(data[f"{case}/quarter/{k}"], data[f"{case}/half/{k}"], record)
        compare_image(cmp, f"{case} image {image_id}", results, ref_kp, ref_score,
                      as_set=bool(data[f"{case}/topk_ties"][k]))
    return cmp


DECODERS = DecoderGolden("higherhrnet_w32_512.npz", ("oracle", "oracle_noise"), compare)
