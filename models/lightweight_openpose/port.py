"""Seed 000's port files (Ascend ModelZoo-PyTorch, AscendIE/TorchAIE/built-in/cv/detection/OpenPose, read for
facts; shared/reference/pipelines.md "The ports' own files"):

- preprocess.py writes ``<stem>.bin`` (raw float32 1x3x368x640, BGR normalised, letterboxed) and appends
  ``<file name> <height> <width> <top> <bottom> <left> <right>`` to ``pad.txt``;
- inference.py (TorchAIE, FP16 precision policy) writes the last two outputs as ``<stem>_0.bin`` (heatmaps
  1x19x46x80) and ``<stem>_1.bin`` (PAFs 1x38x46x80), float32;
- postprocess.py decodes them as upstream does and writes COCO results keyed by the stem as an integer.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from models.lightweight_openpose import codec
from models.lightweight_openpose.layout import PadRecord
from posegate.port.layout import OutputFile, PortLayout, SideFile, SideFileError, Variant

HEIGHT, WIDTH = 368, 640
PROFILE = codec.PROFILES["ascend"]


def _stem(dataset, image_id, index) -> str:
    return Path(dataset.image_info(image_id).file_name).stem


def read_pad_txt(path: Path):
    """(stem, PadRecord) per line of pad.txt, streamed."""
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                if len(fields) != 7:
                    raise ValueError(f"{len(fields)} fields")
                h, w, top, bottom, left, right = (int(v) for v in fields[1:])
            except ValueError as e:
                raise SideFileError(f"{path.name}: line {number}: expected '<file> <height> <width> <top> <bottom> "
                                    f"<left> <right>' with integers ({e})") from None
            if min(h, w) <= 0 or min(top, bottom, left, right) < 0 or top + bottom >= HEIGHT or left + right >= WIDTH:
                raise SideFileError(f"{path.name}: line {number}: size {h}x{w} or padding {top} {bottom} {left} "
                                    f"{right} impossible for a {HEIGHT}x{WIDTH} input")
            yield Path(fields[0]).stem, PadRecord(h, w, min(HEIGHT / h, WIDTH / w), HEIGHT - top - bottom,
                                                  WIDTH - left - right, top, bottom, left, right)


def pad_problem(side: PadRecord, ref: PadRecord) -> str | None:
    if (side.orig_h, side.orig_w) != (ref.orig_h, ref.orig_w):
        return f"image size {side.orig_h}x{side.orig_w}, the image is {ref.orig_h}x{ref.orig_w}"
    got, want = (side.top, side.bottom, side.left, side.right), (ref.top, ref.bottom, ref.left, ref.right)
    if got != want:
        return f"padding (top, bottom, left, right) {got}, the input has {want}"
    return None


def write_pad_txt(path: Path, entries) -> None:
    path.write_text("".join(f"{stem}.jpg {r.orig_h} {r.orig_w} {r.top} {r.bottom} {r.left} {r.right}\n"
                            for stem, r in entries))


# ---- known mistakes, as the reference made the mistaken way ----------------------------------------

def _cubic(raw, profile):
    return codec.preprocess(raw, dataclasses.replace(PROFILE, interpolation=cv2.INTER_CUBIC))[0]


def _top_left(raw, profile):
    x, r = codec.preprocess(raw, "ascend")
    out = np.zeros_like(x)
    out[:, :r.resized_h, :r.resized_w] = x[:, r.top:r.top + r.resized_h, r.left:r.left + r.resized_w]
    return out


def _stretched(raw, profile):
    normed = (raw.astype(np.float32) - 128) / 256
    return cv2.resize(normed, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)


def _decoded(maps, record, image_id, **kwargs):
    people = codec.decode(maps["stage2_heatmaps"][0], maps["stage2_pafs"][0], record, **kwargs)
    return [{"image_id": int(image_id), "category_id": 1, **p} for p in people]


def _linear_maps(maps, record, image_id):
    return _decoded(maps, record, image_id, interpolation=cv2.INTER_LINEAR)


def _padding_kept(maps, record, image_id):
    whole = dataclasses.replace(record, resized_h=record.input_h, resized_w=record.input_w, top=0, bottom=0,
                                left=0, right=0)
    return _decoded(maps, whole, image_id)


LAYOUT = PortLayout(
    profile="368x640",
    input_shape=(1, 3, HEIGHT, WIDTH),
    stem=_stem,
    outputs=(OutputFile("stage2_heatmaps", (1, 19, HEIGHT // 8, WIDTH // 8)),
             OutputFile("stage2_pafs", (1, 38, HEIGHT // 8, WIDTH // 8))),
    side=SideFile("pad.txt", read_pad_txt, pad_problem, write_pad_txt),
    input_variants=(
        Variant("interpolation", "resized with INTER_CUBIC (upstream val.py) where the port uses INTER_LINEAR", _cubic),
        Variant("padding", "the image at the top left, padded bottom-right, where the port centres it", _top_left),
        Variant("scale", f"stretched to {HEIGHT}x{WIDTH}, where the port keeps the aspect ratio and pads",
                _stretched),
    ),
    result_variants=(
        Variant("interpolation", "maps upsampled with INTER_LINEAR where the reference decoder uses INTER_CUBIC",
                _linear_maps),
        Variant("padding", "the padding left in the maps (not cropped with pad.txt's values before resizing)",
                _padding_kept),
    ),
    traps={"channel-order": "Seed 000's README lists the input as RGB_FP32, but its preprocess.py feeds the BGR "
                            "image from cv2.imread, which the network expects: this is the README's trap"},
    seed_precision="fp16",
    trained_like=lambda dataset, image_id, record: trained_like(dataset, image_id, record),
    source="Ascend ModelZoo-PyTorch AscendIE/TorchAIE/built-in/cv/detection/OpenPose/{preprocess,inference,"
           "postprocess}.py",
)


def trained_like(dataset, image_id, record: PadRecord) -> dict:
    """The decoder oracle's maps (drawn wide, in the image frame) resized and padded as the input is, then
    averaged over each 8x8 cell: maps in which the decoder finds the annotated people (AP 1.0 on the
    synthetic set)."""
    info = dataset.image_info(image_id)
    heat, pafs, _, _ = codec.encode_ground_truth(dataset.annotations(image_id), info.height, info.width,
                                                 sigma=10, paf_thickness=10)

    def warp(maps):
        canvas = np.zeros((record.input_h, record.input_w, maps.shape[0]), np.float32)
        resized = cv2.resize(np.ascontiguousarray(maps.transpose(1, 2, 0)), (record.resized_w, record.resized_h),
                             interpolation=cv2.INTER_LINEAR)
        canvas[record.top:record.top + record.resized_h, record.left:record.left + record.resized_w] = \
            resized.reshape(record.resized_h, record.resized_w, -1)
        h, w = record.input_h // codec.STRIDE, record.input_w // codec.STRIDE
        return canvas.reshape(h, codec.STRIDE, w, codec.STRIDE, -1).mean(axis=(1, 3)).transpose(2, 0, 1)[None]
    return {"stage2_heatmaps": warp(heat), "stage2_pafs": warp(pafs)}
