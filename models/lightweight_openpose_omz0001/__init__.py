"""Open Model Zoo human-pose-estimation-0001: the Lightweight OpenPose variant with real trained weights.

Same inputs, codec, metric and tolerances as ``lightweight_openpose``; only the CPM block differs.
"""
from __future__ import annotations

from posegate.spec import Checkpoint, Threshold

from models.lightweight_openpose import make_spec
from models.lightweight_openpose_omz0001.network import build_network

SPEC = make_spec(
    "lightweight_openpose_omz0001", "1", build_network,
    Checkpoint(
        filename="lightweight_openpose_omz0001.pth", container_key="state_dict",
        manifest="lightweight_openpose_omz0001.json", size=16587119,
        digests={"sha256": "5901b015e06e58110da5115b0735682f44297a95207b7b5147914202ff6cc025"},
        how_to_get="../shared/data/weights/lightweight_openpose_omz0001.pth (OMZ human-pose-estimation-0001, "
                   "dequantized to float32 in the upstream container)"),
    # Regression floors on the 4 real mini images, checked by every CI run: torch fp32 measured 0.7526
    # (368x640) and 0.7643 (368xW) on 2026-11-22; 0.03 below, about one keypoint's worth on 12 people.
    thresholds=(
        Threshold("AP", 0.72, "min", dataset="coco-val2017-mini", weights="official",
                  source="regression floor: 0.7526 measured - 0.03", profiles=("368x640",)),
        Threshold("AP", 0.73, "min", dataset="coco-val2017-mini", weights="official",
                  source="regression floor: 0.7643 measured - 0.03", profiles=("368xW",)),
    ),
    notes="OMZ reports 42.8% AP on its own validation subset; no full-val2017 figure is published.",
)
