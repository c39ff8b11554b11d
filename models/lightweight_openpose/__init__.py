"""Lightweight OpenPose inference (seed 000): COCO val2017 AP 0.403 at the Ascend port's 368x640."""
from __future__ import annotations

from models.lightweight_openpose import codec
from models.lightweight_openpose.golden import DECODERS
from models.lightweight_openpose.network import PoseEstimationWithMobileNet, build_network
from models.lightweight_openpose.port import LAYOUT as PORT
from posegate.flows.kinds import BottomUp
from posegate.spec import Checkpoint, Golden, InputProfile, ModelSpec, Threshold, Tolerance
from posegate.training.recipe import Recipe

OUTPUTS = ("stage1_heatmaps", "stage1_pafs", "stage2_heatmaps", "stage2_pafs")

# The Ascend port's static input and the upstream variable-width one (height 368, width free).
PROFILES = (
    InputProfile("368x640", (3, 368, 640), preprocess="ascend", batch_sizes=(1, 4), full_batch_sizes=(8,)),
    InputProfile("368xW", (3, 368, None), preprocess="upstream", batch_sizes=(1,), full_batch_sizes=(4, 8),
                 perf_dims=(3, 368, 496)),
)


def _tolerances():
    # fp32: engines only reorder float sums (measured max_rel <= 2.1e-6 for ONNX Runtime and OpenVINO).
    # fp16: half-precision weights, and the CPU plugin computes in bf16 (8 mantissa bits); measured with
    # the OMZ weights on real images: max_abs <= 0.054, max_rel <= 0.079, cosine >= 0.99991.
    # int8: quantised activations and weights (the OMZ INT8 IR against its dequantised weights in torch);
    # measured on the 4 real mini images at 256x456: heatmaps max_abs <= 0.27, cosine >= 0.9989; PAFs
    # max_abs <= 0.29, cosine >= 0.9876 (their small vectors carry the larger relative error).
    fp32 = Tolerance(max_abs=1e-4, max_rel=2e-5, min_cosine=0.99999)
    fp16 = Tolerance(max_abs=0.15, max_rel=0.15, min_cosine=0.999)
    int8_heatmaps = Tolerance(max_abs=0.4, max_rel=0.4, min_cosine=0.997)
    int8_pafs = Tolerance(max_abs=0.45, max_rel=0.45, min_cosine=0.98)
    return {"fp32": {o: fp32 for o in OUTPUTS}, "fp16": {o: fp16 for o in OUTPUTS},
            "int8": {o: int8_pafs if o.endswith("pafs") else int8_heatmaps for o in OUTPUTS}}


def make_spec(name, version, build, checkpoint, thresholds, golden=None, notes="", artifacts=(), training=None,
              decoder_golden=None):
    """Everything but the network is shared by the Lightweight OpenPose family."""
    return ModelSpec(
        name=name, version=version, build_network=build, checkpoint=checkpoint,
        input_name="data", output_names=OUTPUTS, color="BGR", profiles=PROFILES,
        flow=BottomUp(codec, decode_outputs=("stage2_heatmaps", "stage2_pafs"), stride=codec.STRIDE),
        metric="AP", precisions=("fp32", "fp16"),
        tolerances=_tolerances(),
        metric_parity={"fp32": 0.005, "fp16": 0.03, "int8": 0.05},
        agreement={"fp32": 0.95, "fp16": 0.6, "int8": 0.5},
        thresholds=thresholds, golden=golden, decoder_golden=decoder_golden, opsets=(11, 17),
        expected_throughput={"Ascend310P3": {"368x640": {1: 338.76}}},
        artifacts=artifacts, notes=notes, training=training,
        port=PORT,  # seed 000's files (the OMZ variant's port writes the same ones)
    )


SPEC = make_spec(
    "lightweight_openpose", "1", build_network,
    Checkpoint(
        filename="checkpoint_iter_370000.pth", container_key="state_dict", manifest="lightweight_openpose.json",
        # trained with 3 refinement stages; evaluation keeps one and drops the rest by name
        ignorable=(r"refinement_stages\.[1-9]\d*\.",),
        how_to_get="the official checkpoint_iter_370000.pth of "
                   "Daniil-Osokin/lightweight-human-pose-estimation.pytorch"),
    thresholds=(
        Threshold("AP", 0.403, "min", dataset="official", weights="official",
                  source="seed 000: Ascend 310P3 result on val2017", profiles=("368x640",)),
        Threshold("AP", 0.40, "min", dataset="official", weights="official",
                  source="upstream README: 40% AP single scale", profiles=("368xW",)),
    ),
    golden=Golden("lightweight_openpose.npz", {o: o for o in OUTPUTS},
                  recipe_sha256="a557d63665dc429adc690847af0c3d0110268f7880f230efe457f016cb106eec"),
    decoder_golden=DECODERS,
    # the three-step recipe trains this network (posegate.training): refinement stages -> network
    training=Recipe(PoseEstimationWithMobileNet, preprocess=codec.preprocess, decode=codec.decode,
                    step_checkpoints=tuple(f"lightweight_openpose_train_step{k}.pth" for k in (1, 2, 3))),
)
