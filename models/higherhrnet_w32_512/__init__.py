"""HigherHRNet-W32-512 inference (seed 001): bottom-up, flip test, COCO val2017 AP 0.671.

Input profiles: the 17 input shapes of the seed's ATC command, each a static profile fed by the
Ascend port's transform into that bucket ('bucket:HxW'), and two dynamic ones: 'HxW' (upstream: short
side 512, long side rounded up to a multiple of 64) and 'HxW-ascend' (each image in its own bucket,
the Ascend port's protocol). Every engine batch holds the images, then their flipped copies.

Default selection: the stage tests (export, convert, parity, postprocess) at 512x512 and batch 1
only, since one network pass costs about 1.5 s on one CPU core; every other bucket, batch 2, the two
dynamic profiles and the dataset-level accuracy layers (AP and metric parity per backend) run with
--full. The decoder oracle runs on every dataset by default (it needs no network).
"""
from __future__ import annotations

from models.higherhrnet_w32_512 import codec
from models.higherhrnet_w32_512.golden import DECODERS
from models.higherhrnet_w32_512.network import build_network
from models.higherhrnet_w32_512.port import LAYOUT as PORT
from posegate.flows.kinds import BottomUp
from posegate.spec import Checkpoint, Golden, InputProfile, ModelSpec, Threshold, Tolerance

OUTPUTS = ("out_quarter", "out_half")
DEFAULT_BUCKETS = ("512x512",)


def _profiles():
    # 512x512 first: export samples and the export test's dynamic-axis probe start from profiles[0]
    buckets = sorted(codec.BUCKETS, key=lambda b: b != (512, 512))
    profiles = [InputProfile(codec.bucket_name(b), (3, *b), preprocess=f"bucket:{codec.bucket_name(b)}",
                             batch_sizes=(1,), full_batch_sizes=(2,),
                             default=codec.bucket_name(b) in DEFAULT_BUCKETS, evaluate_by_default=False)
                for b in buckets]
    profiles += [
        InputProfile("HxW", (3, None, None), preprocess="upstream", batch_sizes=(1,), full_batch_sizes=(2,),
                     perf_dims=(3, 512, 768), default=False, evaluate_by_default=False),
        InputProfile("HxW-ascend", (3, None, None), preprocess="ascend", batch_sizes=(1,), full_batch_sizes=(2,),
                     perf_dims=(3, 512, 768), default=False, evaluate_by_default=False),
    ]
    return tuple(profiles)


def _tolerances():
    # Relative to each output's scale only: the recipe weights of the golden file give outputs in the
    # tens of thousands, seeded ones below 1, trained ones heatmaps in [0, 1] and tags of a few units.
    # fp32 engines only reorder float sums: measured max_rel <= 1.0e-6 (ONNX Runtime, OpenVINO; the
    # golden README finds 1.7e-6 between 1 and 2 torch threads). fp16 (computed in bf16 on this CPU):
    # measured max_rel 0.014, cosine > 0.99999 at 512x512 with seeded weights.
    fp32 = Tolerance(max_rel=2e-5, min_cosine=0.99999)
    fp16 = Tolerance(max_rel=0.05, min_cosine=0.999)
    return {"fp32": {o: fp32 for o in OUTPUTS}, "fp16": {o: fp16 for o in OUTPUTS}}


SPEC = ModelSpec(
    name="higherhrnet_w32_512", version="1", build_network=build_network,
    checkpoint=Checkpoint(
        filename="pose_higher_hrnet_w32_512.pth", container_key=None, manifest="higherhrnet_w32_512.json",
        size=115_172_215,
        digests={"sha384": "d344fcc4e426308139397bd708be1c59500e038a540ea0979b6a10556b5f3530"
                           "701d86c0cab276fc5710419f91879e3d"},
        how_to_get="the official pose_higher_hrnet_w32_512.pth of HRNet/HigherHRNet-Human-Pose-Estimation "
                   "(plain state dict; {'state_dict': ...} and 'module.' keys, as the Ascend export reads, load too)"),
    input_name="input", output_names=OUTPUTS, color="RGB", profiles=_profiles(),
    flow=BottomUp(codec, decode_outputs=OUTPUTS, stride=codec.STRIDE, copies=2, capabilities=frozenset({"image"})),
    metric="AP", precisions=("fp32", "fp16"),
    port=PORT,  # seed 001's files: .npy per loader index, per-image buckets, a flip folder
    tolerances=_tolerances(),
    metric_parity={"fp32": 0.005, "fp16": 0.03},
    agreement={"fp32": 0.95, "fp16": 0.6},
    thresholds=(
        Threshold("AP", 0.671, "min", dataset="official", weights="official",
                  source="seed 001: Ascend 310/310P result on val2017 (upstream README 67.1, flip test)",
                  profiles=("HxW-ascend", "HxW")),
    ),
    golden=Golden("higherhrnet_w32_512.npz", {"out_quarter": "out_quarter", "out_half": "out_half"},
                  recipe_sha256="befc457ed756cc6f2fb4f2c98a7607363170f54fa790750ef05acbf1c96596f6"),
    decoder_golden=DECODERS,
    opsets=(11, 17),
    probe_dims=(3, 128, 128),  # export sample and smoke runs: any multiple of 64 is a valid input
    # the seed's 310P (optimised) column, img/s at batch 1 by (H, W); one image is one network pass there
    expected_throughput={"Ascend310P3": {
        "512x512": {1: 262}, "512x1024": {1: 126}, "1024x512": {1: 143}, "512x576": {1: 229},
        "512x640": {1: 215}, "512x704": {1: 188}, "512x768": {1: 172}, "512x832": {1: 161},
        "512x896": {1: 148}, "512x960": {1: 143}, "576x512": {1: 237}, "640x512": {1: 206},
        "704x512": {1: 188}, "768x512": {1: 178}, "832x512": {1: 157}, "896x512": {1: 153},
        "960x512": {1: 140}}},
    notes="No trained HigherHRNet weights are available here: accuracy on real images is the decoder "
          "oracle; backends are compared with torch by tensor parity on seeded or recipe weights.",
)
