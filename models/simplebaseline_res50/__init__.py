"""SimpleBaseline ResNet-50, top-down on person boxes at 256x192 (Xiao et al. 2018, "Simple Baselines for Human
Pose Estimation and Tracking"; microsoft/human-pose-estimation.pytorch): COCO val2017 AP 70.4 with flip test on
the 56.4 AP person detections (upstream README, pose_resnet_50 256x192).

The second top-down model, one folder: crop geometry and oracle come from posegate.flows.topdown, the flow is
TopDown, and only the network, normalisation, flip test, decode and finalisation (rescoring, OKS-NMS) are
its own. No trained weights are available here: seeded weights, tensor parity and the decoder oracle gate.
"""
from __future__ import annotations

from models.simplebaseline_res50 import codec
from models.simplebaseline_res50.network import build_network
from posegate.flows.kinds import TopDown
from posegate.spec import Checkpoint, InputProfile, ModelSpec, Threshold, Tolerance

OUTPUT = "heatmaps"
DIMS = (3, codec.INPUT_H, codec.INPUT_W)

PROFILES = (
    # bs1 keeps the default suite fast (ResNet-50 per crop); more batch sizes under --full
    # No trained weights exist here, so a dataset's AP is 0 on every backend and dataset-level evaluation
    # (accuracy, metric parity) would prove nothing for its cost: it runs under --full; tensor parity stays
    InputProfile("256x192", DIMS, preprocess="no-flip", batch_sizes=(1,), full_batch_sizes=(4, 8, 16, 32, 64),
                 eval_batch=8, evaluate_by_default=False),
    # upstream's protocol (TEST.FLIP_TEST with SHIFT_HEATMAP): twice the engine work, only under --full
    InputProfile("256x192-flip", DIMS, preprocess="upstream", batch_sizes=(1,), full_batch_sizes=(4, 8, 16, 32, 64),
                 eval_batch=8, copies=2, default=False),
)

UPSTREAM_AP = ("microsoft/human-pose-estimation.pytorch README: pose_resnet_50 256x192, flip test, "
               "COCO val2017 with the 56.4 AP person detections: AP 70.4")


def _tolerances():
    # Relative to the output's scale, as MSPN's. Measured on seeded weights, real mini crops, bs1: fp32 max_rel
    # 1.4e-6 (ONNX Runtime), 2.0e-6 (OpenVINO); OpenVINO FP16 (bf16 compute here) 1.0e-2, cosine 0.99995.
    fp32 = Tolerance(max_rel=2e-5, min_cosine=0.99999)
    fp16 = Tolerance(max_rel=0.05, min_cosine=0.999)
    return {"fp32": {OUTPUT: fp32}, "fp16": {OUTPUT: fp16}}


SPEC = ModelSpec(
    name="simplebaseline_res50", version="1", build_network=build_network,
    checkpoint=Checkpoint(
        filename="pose_resnet_50_256x192.pth.tar", container_key=None, manifest="simplebaseline_res50.json",
        how_to_get="upstream's model zoo file pose_resnet_50_256x192.pth.tar (microsoft/human-pose-estimation."
                   "pytorch README, 'models/pytorch/pose_coco/'); a plain state dict, 'module.' prefixes dropped"),
    input_name="input", output_names=(OUTPUT,), color="BGR", profiles=PROFILES,
    flow=TopDown(codec, OUTPUT),
    metric="AP", precisions=("fp32", "fp16"),
    tolerances=_tolerances(),
    metric_parity={"fp32": 0.005, "fp16": 0.03},
    agreement={"fp32": 0.95, "fp16": 0.6},
    thresholds=(
        Threshold("AP", 0.704, "min", dataset="official", weights="official", source=UPSTREAM_AP,
                  profiles=("256x192-flip",)),
    ),
    opsets=(11, 17),
    notes="Upstream evaluates with flip test (256x192-flip); 256x192 is the same without it, no gate claimed.",
)
