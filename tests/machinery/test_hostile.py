"""The suite as a hostile or unlucky user meets it: every bad input below is refused with a message that
names the file or option and what is wrong, no data file runs code, and nothing quietly falls back.

Each row builds one bad input in a temporary folder and says the outcome (the exception it must raise)
and a fragment of its message. The functions are called directly (fast); a few rows run pytest itself
in a subprocess to check exit code 4 and a single clear line.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from filelock import FileLock

from models import MODELS
from posegate import startup_checks as inputs
from posegate.context import RunContext
from posegate.datasets import h36m_synthetic, image_header, synthetic
from posegate.datasets.coco import ANNOTATION_FILE, CocoKeypointDataset, DatasetError
from posegate.datasets.h36m import FILE_3D, H36mDataset
from posegate.gate.baseline import AccuracyBaseline
from posegate.gate.throughput import ThroughputBaseline
from posegate.pipeline import Pipeline, shards
from posegate.storage import cache as cache_mod
from posegate.storage import serial
from posegate.storage.cache import ArtifactBuildError, ArtifactCache
from posegate.weights import WeightsError, check_finite, file_digest, read_checkpoint, unwrap_state_dict

pytestmark = pytest.mark.stage
STAGE = "weights"
REPO = Path(__file__).resolve().parents[2]
MARKER = "payload-ran"


class _Payload:
    """Pickles as a call: what a malicious data file carries. ``call`` is (function, args)."""

    def __init__(self, call):
        self.call = call

    def __reduce__(self):
        return self.call


def _system(tmp: Path):
    return _Payload((os.system, (f"touch {tmp / MARKER}",)))


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("hostile") / "set", num_images=3, seed=0)


@pytest.fixture(scope="module")
def h36m_set(tmp_path_factory) -> Path:
    return h36m_synthetic.generate(tmp_path_factory.mktemp("hostile-h36m") / "set", None)


# ---- the rows: name -> (make(tmp, coco, h36m) -> callable, exception, message fragment) ------------------

def _ckpt(write):
    def make(tmp, coco, h36m):
        path = tmp / "bad.pth"
        write(path, tmp)
        return lambda: check_finite(unwrap_state_dict(read_checkpoint(path), None, path), path)
    return make


def _torch_save(obj):
    return lambda path, tmp: torch.save(obj, path)


def _truncated_ckpt(path, tmp):
    torch.save({"w": torch.zeros(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:300])


def _npz(objects_of_tmp):
    def make(tmp, coco, h36m):
        root = Path(shutil.copytree(h36m, tmp / "h36m"))
        (root / FILE_3D).unlink()
        h36m_synthetic._save_npz(root / FILE_3D, **objects_of_tmp(tmp))
        return lambda: H36mDataset(root).sequences
    return make


def _raw_npz(data: bytes):
    def make(tmp, coco, h36m):
        root = Path(shutil.copytree(h36m, tmp / "h36m"))
        (root / FILE_3D).write_bytes(data)
        return lambda: H36mDataset(root).sequences
    return make


def _shard(prepare, samples=(1, 2, 3)):
    def make(tmp, coco, h36m):
        folder = tmp / "shards"
        folder.mkdir()
        prepare(folder, tmp)
        return lambda: shards.merge(folder, "m-ort", "d" * 16, list(samples))
    return make


def _coco(edit):
    """A copy of the synthetic set with ``edit(root)`` applied, then read as a dataset."""
    def make(tmp, coco, h36m):
        root = Path(shutil.copytree(coco, tmp / "coco"))
        edit(root)
        return lambda: CocoKeypointDataset(root).load_detections()
    return make


def _edit_annotations(change):
    def edit(root):
        path = root / ANNOTATION_FILE
        data = json.loads(path.read_text())
        path.write_text(json.dumps(change(data)))
    return edit


def _write_detections(content):
    def edit(root):
        for f in (root / "detections").glob("*.json"):
            f.unlink()
        (root / "detections" / "person_detections.json").write_text(json.dumps(content))
    return edit


def _det(**changes):
    return [{"image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 50.0, 80.0], "score": 0.9, **changes}]


def _image(damage):
    def make(tmp, coco, h36m):
        root = Path(shutil.copytree(coco, tmp / "coco"))
        damage(root / "val2017" / "000000000002.jpg")
        dataset = CocoKeypointDataset(root)
        return lambda: dataset.load_image(2)
    return make


def _root(build, check=inputs.check_data_root):
    def make(tmp, coco, h36m):
        return lambda: check(build(tmp, coco))
    return make


def _nested(tmp, coco):
    shutil.copytree(coco, tmp / "outer" / "data" / "coco-mini")
    return tmp / "outer"


def _broken_coco_root(tmp, coco):
    root = Path(shutil.copytree(coco, tmp / "root" / "coco"))
    (root / ANNOTATION_FILE).write_text('{"images": [')
    return tmp / "root"


def _weights(build):
    def make(tmp, coco, h36m):
        return lambda: inputs.check_weights_dir(build(tmp), MODELS.values())
    return make


def _file(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _baseline(loader, content):
    def make(tmp, coco, h36m):
        path = tmp / "baseline.json"
        if content is None:
            path.mkdir()
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        return lambda: loader.load(path)
    return make


def _call(fn):
    return lambda tmp, coco, h36m: (lambda: fn(tmp))


def _artifacts(option: str):
    inputs.check_artifacts(RunContext.from_options(cache_dir="/nonexistent", artifacts=[option]), MODELS.values())


def _link(path: Path, target) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def _loop(folder: Path, name: str = "loop") -> Path:
    """``name`` -> ``name-b`` -> ``name``: a link loop."""
    _link(folder / f"{name}-b", folder / name)
    return _link(folder / name, folder / f"{name}-b")


OMZ_PTH = "lightweight_openpose_omz0001.pth"


def _home_like(tmp: Path) -> Path:
    """What ``--cache-dir=~`` points at: a user's things, one named like an old leftover."""
    _file(tmp / "home" / "notes.txt")
    _age(_file(tmp / "home" / ".config.old-2024" / "settings.ini").parent)  # what the old clean-up removed
    return tmp / "home"


def _png_declaring(height: int, width: int) -> bytes:
    """A PNG whose header (with a valid CRC) declares height x width: a decompression bomb's first bytes."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    small = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    return small[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + small[33:]


def _jpeg_declaring(path: Path, height: int, width: int) -> None:
    """The image's own JPEG with its frame header (SOF0) rewritten to declare height x width."""
    raw = bytearray(path.read_bytes())
    at = raw.find(b"\xff\xc0")
    raw[at + 5:at + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(raw))


def _read_only_mid_run(tmp: Path):
    """The cache's kind folder replaced by a file after the session started: every write there fails for
    real (this box runs as root, so a chmod would not bite)."""
    cache = ArtifactCache(tmp / "c")
    _file(tmp / "c" / "onnx")
    return cache.get_or_build("onnx", {"x": 1}, lambda d: (d / "model.onnx").write_bytes(b"x"))


def _tampered_shard(folder: Path, tmp: Path) -> None:
    path = shards.write(folder, "m-ort", "d" * 16, 1, 1, [1, 2, 3], ["a", "b", "c"])
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))


def _renamed_shard(folder: Path, tmp: Path) -> None:
    shards.write(folder, "m-ort", "d" * 16, 1, 2, [1, 2], ["a", "b"])
    one = folder / shards.name("m-ort", "d" * 16, 1, 2)
    shutil.copy(one, folder / shards.name("m-ort", "d" * 16, 2, 2))


def _image_entry(**changes):
    return _edit_annotations(lambda d: {**d, "images": [{**d["images"][0], **changes}, *d["images"][1:]]})


def _annotation_entry(**changes):
    return _edit_annotations(lambda d: {**d, "annotations": [{**d["annotations"][0], **changes},
                                                             *d["annotations"][1:]]})


def _keypoint(index: int, value):
    def change(d):
        ann = dict(d["annotations"][0])
        ann["keypoints"] = [*ann["keypoints"][:index], value, *ann["keypoints"][index + 1:]]
        return {**d, "annotations": [ann, *d["annotations"][1:]]}
    return _edit_annotations(change)


def _annotations_link(root: Path) -> None:
    (root / ANNOTATION_FILE).unlink()
    (root / ANNOTATION_FILE).symlink_to(root / "gone.json")


def _from_options(**options):
    return _call(lambda t: RunContext.from_options(**{k: v(t) for k, v in options.items()}))


BENCH = {"machine_info": {}, "benchmarks": [{"name": "t", "extra_info": {}}]}
ROWS = {
    # checkpoints
    "ckpt-missing": (_call(lambda tmp: read_checkpoint(tmp / "nope.pth")), WeightsError, "checkpoint file not found"),
    "ckpt-empty": (_ckpt(lambda p, t: p.write_bytes(b"")), WeightsError, "checkpoint file is empty"),
    "ckpt-truncated": (_ckpt(_truncated_ckpt), WeightsError, "truncated or not a PyTorch checkpoint"),
    "ckpt-json": (_ckpt(lambda p, t: p.write_text('{"a": 1}')), WeightsError, "not a PyTorch checkpoint"),
    "ckpt-pickle-runs-os-system": (_ckpt(lambda p, t: p.write_bytes(pickle.dumps({"w": _system(t)}))),
                                   WeightsError, "refused to unpickle"),
    "ckpt-torch-save-runs-eval": (_ckpt(lambda p, t: torch.save({"w": _Payload((eval, ("1+1",)))}, p)),
                                  WeightsError, "refused to unpickle"),
    "ckpt-nan": (_ckpt(_torch_save({"a.weight": torch.tensor([1.0, float("nan")]), "b": torch.ones(2)})),
                 WeightsError, "1 tensor(s) hold NaN or Inf values: a.weight (1)"),
    "ckpt-inf": (_ckpt(_torch_save({"a": torch.ones(2), "z.bias": torch.full((3,), float("-inf"))})),
                 WeightsError, "z.bias (3)"),
    "ckpt-list": (_ckpt(_torch_save([torch.ones(2)])), WeightsError, "expected a dict checkpoint, found list"),
    "ckpt-no-tensors": (_ckpt(_torch_save({"epoch": 3})), WeightsError, "no tensors found"),
    # Human3.6M npz files
    "h36m-npz-runs-os-system": (_npz(lambda t: {"positions_3d": {"S9": {"Walking": _system(t)}}}),
                                DatasetError, "refused global posix.system"),
    "h36m-npz-runs-eval": (_npz(lambda t: {"positions_3d": _Payload((eval, ("print(1)",)))}),
                           DatasetError, "refused global builtins.eval"),
    "h36m-npz-not-zip": (_raw_npz(b"not a zip archive"), DatasetError, "cannot be read as a VideoPose3D npz"),
    "h36m-npz-no-field": (_npz(lambda t: {"other": {"S9": {}}}), DatasetError, "has no 'positions_3d' entry"),
    "h36m-npz-not-dict": (_npz(lambda t: {"positions_3d": 7}), DatasetError, "holds a int, not a dict of subjects"),
    # shards
    "shard-pickle-file": (_shard(lambda f, t: (f / "m-ort.dddddddddddddddd.shard1of1.pkl").write_bytes(
        pickle.dumps(_system(t)))), shards.ShardError, "are never read"),
    "shard-pickle-as-npz": (_shard(lambda f, t: (f / "m-ort.dddddddddddddddd.shard1of1.npz").write_bytes(
        pickle.dumps(_system(t)))), shards.ShardError, "unreadable or foreign"),
    "shard-missing": (_shard(lambda f, t: shards.write(f, "m-ort", "d" * 16, 1, 2, [1, 2], ["a", "b"])),
                      shards.ShardError, "shard(s) 2/2 missing"),
    "shard-none": (_shard(lambda f, t: None), shards.ShardError, "no shard of m-ort"),
    "shard-other-data": (_shard(lambda f, t: shards.write(f, "m-ort", "e" * 16, 1, 1, [1, 2, 3], [1, 2, 3])),
                         shards.ShardError, "made from other data"),
    "shard-other-samples": (_shard(lambda f, t: shards.write(f, "m-ort", "d" * 16, 1, 1, [1, 2, 4], [1, 2, 3])),
                            shards.ShardError, "its 3 samples are not samples 0 to 2"),
    "shard-mixed-n": (_shard(lambda f, t: (shards.write(f, "m-ort", "d" * 16, 1, 2, [1, 2], [1, 2]),
                                           shards.write(f, "m-ort", "d" * 16, 2, 3, [3], [3]))),
                      shards.ShardError, "disagree on N"),
    "shard-folder-missing": (_call(lambda tmp: shards.merge(tmp / "absent", "m", "d" * 16, [1])),
                             shards.ShardError, "no such folder"),
    "serial-foreign-record": (_call(lambda tmp: (np.savez(tmp / "r.npz", tree=np.frombuffer(
        b'{"$record": "os:system", "fields": {}}', np.uint8)), serial.load(tmp / "r.npz"))),
        serial.SerialError, "is not one of posegate's or the models' own"),
    # a module no run ever loads (a real one might be loaded by an earlier test on the same worker)
    "serial-unloaded-module": (_call(lambda tmp: (np.savez(tmp / "r.npz", tree=np.frombuffer(
        b'{"$record": "posegate.no_such_module:X", "fields": {}}', np.uint8)), serial.load(tmp / "r.npz"))),
        serial.SerialError, "is not loaded"),
    "predictions-dir-unwritable": (_call(lambda t: inputs.check_cache_dir(_file(t / "f") / "shards",
                                                                         "--predictions-dir")),
                                   inputs.InputError, "--predictions-dir="),
    # COCO folders
    "coco-annotations-not-json": (_coco(lambda r: (r / ANNOTATION_FILE).write_text("{")), DatasetError,
                                  "not valid JSON"),
    "coco-captions-file": (_coco(_edit_annotations(lambda d: {**d, "annotations": [{"caption": "a"}]})),
                           DatasetError, "captions file"),
    "coco-results-as-ground-truth": (_coco(_edit_annotations(lambda d: [{"image_id": 1, "score": 1}])),
                                     DatasetError, "is a results/detections list"),
    "coco-instances-file": (_coco(_edit_annotations(lambda d: {**d, "categories": [{"id": 1}]})), DatasetError,
                            "carry no 'keypoints'"),
    "coco-50-keypoint-values": (_coco(_edit_annotations(lambda d: {**d, "annotations": [
        {**d["annotations"][0], "keypoints": [0] * 50}]})), DatasetError, "has 50 keypoint values, expected 51"),
    "coco-listed-image-missing": (_coco(lambda r: (r / "val2017" / "000000000002.jpg").unlink()), DatasetError,
                                  "1 of the 3 images listed in annotations/person_keypoints_val2017.json are "
                                  "missing: 000000000002.jpg"),
    "coco-image-folder-empty": (_coco(lambda r: [p.unlink() for p in (r / "val2017").iterdir()]), DatasetError,
                                "val2017: is empty but"),
    "coco-detections-empty": (_coco(_write_detections([])), DatasetError, "the detections list is empty"),
    "coco-detection-negative-box": (_coco(_write_detections(_det(bbox=[10, 10, -5, 20]))), DatasetError,
                                    "person_detections.json: detection #0 has bbox [10, 10, -5, 20] with a negative"),
    "coco-detection-nan-score": (_coco(_write_detections(_det(score=None))), DatasetError,
                                 "detection #0 has score None"),
    "coco-detections-not-list": (_coco(_write_detections({"image_id": 1})), DatasetError, "must be a JSON list"),
    "coco-image-truncated": (_image(lambda p: p.write_bytes(p.read_bytes()[:200])), DatasetError,
                             "000000000002.jpg: image file is truncated"),
    "coco-image-not-an-image": (_image(lambda p: p.write_bytes(b"GIF89a" * 30)), DatasetError, "cannot be decoded"),
    "coco-image-wrong-size": (_image(lambda p: cv2.imwrite(str(p), np.zeros((20, 30, 3), np.uint8))),
                              DatasetError, "decoded size 20x30 differs"),
    # given paths
    "data-root-missing": (_root(lambda t, c: t / "nope"), inputs.InputError, "does not exist or is not a folder"),
    "data-root-is-a-file": (_root(lambda t, c: _file(t / "f")), inputs.InputError, "does not exist or is not a folder"),
    "data-root-empty": (_root(lambda t, c: t), inputs.InputError, "no dataset recognised"),
    "data-root-nested": (_root(_nested), inputs.InputError, "found one level further down, in"),
    "data-root-broken-dataset": (_root(_broken_coco_root), inputs.InputError, "--data-root="),
    "weights-dir-missing": (_weights(lambda t: t / "nope"), inputs.InputError, "--weights-dir="),
    "weights-dir-unrelated-files": (_weights(lambda t: _file(t / "w" / "resnet50.pth").parent), inputs.InputError,
                                    "holds none of the checkpoint files this suite knows"),
    "cache-dir-unwritable": (_call(lambda t: inputs.check_cache_dir(_file(t / "file") / "cache")), inputs.InputError,
                             "--cache-dir="),
    "report-json-is-folder": (_call(lambda t: inputs.check_output_file("--report-json", str(t))), inputs.InputError,
                              "is a folder"),
    "report-md-folder-missing": (_call(lambda t: inputs.check_output_file("--report-md", str(t / "no" / "r.md"))),
                                 inputs.InputError, "does not exist"),
    "artifact-file-missing": (_call(lambda t: _artifacts(f"lightweight_openpose:openvino={t / 'no.xml'}")),
                              inputs.InputError, "no.xml: no such file"),
    "artifact-unknown-model": (_call(lambda t: _artifacts(f"posenet:openvino={_file(t / 'm.xml')}")), ValueError,
                               "no model 'posenet'"),
    "artifact-option-malformed": (_call(lambda t: _artifacts("lightweight_openpose=x.xml")), ValueError,
                                  "expected MODEL:BACKEND[:PRECISION]=PATH"),
    "boxes-env-bad": (_call(lambda t: RunContext.from_options(boxes="gt")), ValueError, "expected 'detections'"),
    "shard-option-bad": (_call(lambda t: shards.parse("3/2")), ValueError, "expected K/N"),
    # ---- issue 27: the cache touches only what it made ----
    "cache-dir-holds-other-things": (_call(lambda t: inputs.check_cache_dir(_home_like(t), own=True)),
                                     inputs.InputError, "is not empty and is not a posegate cache"),
    "cache-subfolder-is-a-loop": (_call(lambda t: ((t / "c").mkdir(), cache_mod.claim(t / "c"),
                                                   _loop(t / "c", "artifacts"),
                                                   inputs.check_cache_dir(t / "c", own=True))),
                                  inputs.InputError, "its artifacts is not a folder"),
    # ---- no silent fallback through links or special files ----
    "ckpt-dangling-link": (_weights(lambda t: _link(t / "w" / OMZ_PTH, "/mnt/unmounted/" + OMZ_PTH).parent),
                           inputs.InputError, f"{OMZ_PTH} is a symbolic link to /mnt/unmounted/{OMZ_PTH}, which "
                                              "does not exist"),
    "ckpt-dangling-link-read": (_call(lambda t: read_checkpoint(_link(t / "x.pth", t / "gone.pth"))), WeightsError,
                                "x.pth: is a symbolic link to"),
    "ckpt-is-a-folder": (_weights(lambda t: _file(t / "w" / OMZ_PTH / "inside").parent.parent), inputs.InputError,
                         f"{OMZ_PTH} is a folder, not a regular file"),
    "ckpt-is-dev-zero": (_weights(lambda t: _link(t / "w" / OMZ_PTH, "/dev/zero").parent), inputs.InputError,
                         f"{OMZ_PTH} is a character device, not a regular file"),
    "ckpt-is-a-loop": (_weights(lambda t: _loop(t / "w", OMZ_PTH).parent), inputs.InputError,
                       f"{OMZ_PTH} cannot be read"),
    "data-root-dataset-dangling-link": (_root(lambda t, c: _link(t / "root" / "coco", t / "unmounted").parent),
                                        inputs.InputError, "coco: is a symbolic link to"),
    "data-root-dataset-loop": (_root(lambda t, c: _loop(t / "root", "coco").parent), inputs.InputError,
                               "coco: is a symbolic link loop"),
    "data-root-is-a-dangling-link": (_from_options(data_root=lambda t: _link(t / "data", t / "unmounted")),
                                     ValueError, "--data-root=", ),
    "annotation-file-dangling-link": (_coco(_annotations_link), DatasetError,
                                      "person_keypoints_val2017.json: is a symbolic link to"),
    # ---- datasets are validated, not believed ----
    "coco-image-id-string": (_coco(_image_entry(id="1")), DatasetError, "image #0 (id '1') has id '1' (str), not an "
                                                                         "integer"),
    "coco-image-id-float": (_coco(_image_entry(id=1.0)), DatasetError, "has id 1.0 (float), not an integer"),
    "coco-annotation-image-id-string": (_coco(_annotation_entry(image_id="1")), DatasetError,
                                        "has image_id '1' (str), not an integer"),
    "coco-file-name-null": (_coco(_image_entry(file_name=None)), DatasetError,
                            "has file_name None, not a relative path inside val2017/"),
    "coco-file-name-absolute": (_coco(_image_entry(file_name="/etc/passwd")), DatasetError,
                                "has file_name '/etc/passwd', not a relative path"),
    "coco-file-name-dotdot": (_coco(_image_entry(file_name="../annotations/person_keypoints_val2017.json")),
                              DatasetError, "has file_name '../annotations/"),
    "coco-height-zero": (_coco(_image_entry(height=0)), DatasetError, "has height 0, not a positive integer"),
    "coco-width-string": (_coco(_image_entry(width="640")), DatasetError, "has width '640', not a positive integer"),
    "coco-duplicate-image-id": (_coco(_edit_annotations(lambda d: {**d, "images": [*d["images"], d["images"][0]]})),
                                DatasetError, "is listed twice"),
    "coco-keypoint-nan": (_coco(_keypoint(3, float("nan"))), DatasetError,
                          "has keypoint value nan at index 3 (left_eye), not a finite number"),
    "coco-area-inf": (_coco(_annotation_entry(area=float("inf"))), DatasetError, "has area inf"),
    "coco-bbox-nan": (_coco(_annotation_entry(bbox=[1.0, 2.0, float("nan"), 4.0])), DatasetError,
                      "has bbox [1.0, 2.0, nan, 4.0], not 4 finite numbers"),
    "coco-visibility-3": (_coco(_keypoint(2, 3)), DatasetError, "has visibility 3 for nose, not 0, 1 or 2"),
    "coco-detections-name-no-image": (_coco(_write_detections(_det(image_id=999))), DatasetError,
                                      "1 of the 1 detections name no image of"),
    "coco-png-header-20000x20000": (_image(lambda p: p.write_bytes(_png_declaring(20000, 20000))), DatasetError,
                                    "its header declares 20000x20000 pixels (400 Mpx), more than the limit"),
    "coco-jpeg-header-over-limit": (_image(lambda p: _jpeg_declaring(p, 9000, 9000)), DatasetError,
                                    "its header declares 9000x9000 pixels"),
    # ---- one line, never INTERNALERROR ----
    "data-root-is-a-loop": (_from_options(data_root=lambda t: _loop(t)), ValueError,
                            "is or passes through a symbolic link loop"),
    "cache-dir-is-a-loop": (_from_options(cache_dir=lambda t: _loop(t) / "cache"), ValueError,
                            "--cache-dir="),
    "cache-unwritable-mid-run": (_call(_read_only_mid_run), ArtifactBuildError, "onnx: the cache"),
    "report-path-through-a-loop": (_call(lambda t: inputs.check_output_file("--report-json", str(_loop(t) / "r.json"))),
                                   inputs.InputError, "symbolic link loop"),
    "save-visuals-is-a-file": (_call(lambda t: inputs.check_output_dir("--save-visuals", str(_file(t / "v")))),
                               inputs.InputError, "is a file, not a folder"),
    "save-visuals-under-a-file": (_call(lambda t: inputs.check_output_dir("--save-visuals", str(_file(t / "v") / "d"))),
                                  inputs.InputError, "is a file, so the folder cannot be made there"),
    "artifact-is-a-folder": (_call(lambda t: _artifacts(f"lightweight_openpose:onnxruntime={_file(t / 'm' / 'x')}/..")),
                             inputs.InputError, "is a folder; onnxruntime takes a model file"),
    "artifact-is-dev-zero": (_call(lambda t: _artifacts("lightweight_openpose:onnxruntime=/dev/zero")),
                             inputs.InputError, "/dev/zero: is not a regular file"),
    "artifact-ir-without-bin": (_call(lambda t: _artifacts(f"lightweight_openpose:openvino={_file(t / 'm.xml')}")),
                                inputs.InputError, "an OpenVINO IR is a .xml file with its .bin beside it"),
    "shard-tampered-bytes": (_shard(_tampered_shard), shards.ShardError,
                             "m-ort.dddddddddddddddd.shard1of1.npz is unreadable or foreign"),
    "shard-renamed": (_shard(_renamed_shard, samples=(1, 2, 3, 4)), shards.ShardError,
                      "shard2of2.npz is unreadable or foreign (records shard 1/2, its name says otherwise)"),
    "shard-edited-samples": (_shard(lambda f, t: (shards.write(f, "m-ort", "d" * 16, 1, 2, [1, 2], [1, 2]),
                                                  shards.write(f, "m-ort", "d" * 16, 2, 2, [4], [4]))),
                             shards.ShardError, "shard2of2.npz: its 1 samples are not samples 2 to 2"),
    # baselines
    "accuracy-baseline-not-json": (_baseline(AccuracyBaseline, "{"), ValueError, "is not JSON"),
    "accuracy-baseline-wrong-kind": (_baseline(AccuracyBaseline, BENCH), ValueError,
                                     "is not a posegate accuracy baseline"),
    "accuracy-baseline-folder": (_baseline(AccuracyBaseline, None), ValueError, "is a folder"),
    "accuracy-baseline-bad-entry": (_baseline(AccuracyBaseline, {"format": "posegate-accuracy-baseline/1",
                                                                 "entries": {"t::AP": {"value": "high"}}}),
                                    ValueError, "malformed entries"),
    "throughput-baseline-not-json": (_baseline(ThroughputBaseline, "\x00"), ValueError, "is not JSON"),
    "throughput-baseline-wrong-kind": (_baseline(ThroughputBaseline, {"format": "posegate-accuracy-baseline/1"}),
                                       ValueError, "is not a pytest-benchmark result file"),
    "throughput-baseline-folder": (_baseline(ThroughputBaseline, None), ValueError, "is a folder"),
    "throughput-baseline-bad-benchmarks": (_baseline(ThroughputBaseline, {**BENCH, "benchmarks": [3]}), ValueError,
                                           "malformed pytest-benchmark file"),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_is_refused_with_a_clear_message(row, tmp_path, coco_set, h36m_set):
    make, error, fragment = ROWS[row]
    attempt = make(tmp_path, coco_set, h36m_set)
    with pytest.raises(error) as raised:
        attempt()
    assert fragment in str(raised.value), f"{row}: {raised.value}"
    assert not (tmp_path / MARKER).exists(), f"{row}: the file's payload ran"


def test_the_table_is_big_enough():
    assert len(ROWS) >= 40


def test_the_payloads_are_real(tmp_path):
    """The control: plain pickle does run the rows' payload, so their refusals above mean something."""
    pickle.loads(pickle.dumps(_system(tmp_path)))
    assert (tmp_path / MARKER).exists()


# ---- the faithful case of the header check: real images pass, and their headers tell their true size ----

def test_image_headers_give_the_decoded_size_of_real_images(coco_set, tmp_path):
    """The pixel limit reads sizes from headers before decoding; on the synthetic set, on PNGs and on the
    shared COCO images (baseline and progressive JPEGs, EXIF) the header's size is the decoded one."""
    paths = sorted((coco_set / "val2017").glob("*.jpg"))
    paths += sorted(Path(REPO.parent / "shared" / "data" / "coco-val2017-mini" / "val2017").glob("*.jpg"))
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), np.uint8)
    for ext, flags in ((".png", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])):
        cv2.imwrite(str(tmp_path / f"x{ext}"), image, flags)
        paths.append(tmp_path / f"x{ext}")
    for path in paths:
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        assert image_header.header_size(path.read_bytes()) == decoded.shape[:2], path
    assert len(paths) >= 5


# ---- a warm cache never hides changed data ---------------------------------------------------------

def test_a_replaced_image_changes_the_identity_even_with_its_mtime_restored(coco_set, tmp_path):
    root = Path(shutil.copytree(coco_set, tmp_path / "coco"))
    before = CocoKeypointDataset(root).identity
    assert CocoKeypointDataset(root).identity == before  # the memoised digest is stable
    path = root / "val2017" / "000000000002.jpg"
    st = path.stat()
    image = cv2.imread(str(path))
    cv2.imwrite(str(path), 255 - image)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = CocoKeypointDataset(root).identity
    assert after != before and after.split("@")[0] == before.split("@")[0]


def test_a_replaced_image_invalidates_cached_predictions(tmp_path):
    spec = MODELS["lightweight_openpose"]
    profile = spec.profiles[0]
    root = synthetic.generate(tmp_path / "coco", num_images=1, seed=0)  # one image: seconds, not minutes
    cache = ArtifactCache(tmp_path / "cache")

    def predict():
        pipeline = Pipeline(cache, None)
        results = pipeline.predictions(spec, "torch", "fp32", profile, CocoKeypointDataset(root))
        pipeline.close()
        return results
    predict()
    builds = cache.stats.by_kind["predictions"]["builds"]
    predict()
    assert cache.stats.by_kind["predictions"]["builds"] == builds, "a warm run with nothing changed rebuilt"
    path = next((root / "val2017").glob("*.jpg"))
    cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    predict()
    assert cache.stats.by_kind["predictions"]["builds"] == builds + 1, "changed pixels served from the cache"


# ---- orphan temporary folders ------------------------------------------------------------------------

def _own_temp(folder: Path) -> Path:
    """A temporary folder as the suite makes one: marked with its own file and text."""
    folder.mkdir(parents=True)
    (folder / cache_mod.TEMP_MARKER).write_text(cache_mod.TEMP_TEXT)
    return folder


def _age(*paths: Path) -> None:
    old = time.time() - 2 * cache_mod.ORPHAN_AGE_S
    for path in paths:
        for p in [*path.rglob("*"), path]:
            os.utime(p, (old, old), follow_symlinks=False)


def test_orphan_temp_folders_are_cleaned_but_not_a_live_build(tmp_path):
    cache_mod.claim(tmp_path)
    entry_dir = tmp_path / "artifacts" / "onnx" / "ab"
    orphan, live, young = entry_dir / ".abcdef01-x1", entry_dir / ".12345678-x2", entry_dir / ".99999999-x3"
    staged = tmp_path / "datasets" / "coco-keypoints" / ".synthetic.tmp-x4"
    for folder, lock in ((orphan, "abcdef01aa.lock"), (live, "12345678bb.lock"), (young, "99999999cc.lock"),
                         (staged, "../.synthetic.lock")):
        _own_temp(folder)
        (folder / "half.bin").write_bytes(b"x")
        (folder.parent / lock).resolve().touch()
    _age(orphan, live, staged)
    kept = entry_dir / "0123abcd" / "model.onnx"  # a finished entry is never touched
    _file(kept)
    _age(kept.parent)
    with FileLock(str(entry_dir / "12345678bb.lock")):
        # the lock is per process: ask from another one, as a second pytest session would
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=lambda: queue.put(sorted(p.name for p in cache_mod.clean_orphans(tmp_path))))
        proc.start()
        removed = queue.get(timeout=30)
        proc.join(30)
    assert removed == [".abcdef01-x1", ".synthetic.tmp-x4"]
    assert live.is_dir() and young.is_dir() and kept.is_file() and not orphan.exists() and not staged.exists()


def test_the_clean_up_removes_only_folders_the_suite_marked_in_its_own_subfolders(tmp_path):
    """Named like a leftover, old, unlocked, but not the suite's: a user's ``.config.old-2024/``, a folder
    whose marker is a link or carries other text, a marked folder outside artifacts/ and datasets/, and
    one reached through a link: none is removed. The control (a marked one beside them) is."""
    cache_mod.claim(tmp_path)
    sets = tmp_path / "datasets" / "coco-keypoints"
    user = _file(sets / ".config.old-2024" / "settings.ini").parent
    wrong_text = _file(sets / ".a.tmp-1" / cache_mod.TEMP_MARKER, "mine").parent
    linked_marker = sets / ".b.tmp-2"
    linked_marker.mkdir()
    (linked_marker / cache_mod.TEMP_MARKER).symlink_to(_file(tmp_path / "outside.txt", cache_mod.TEMP_TEXT))
    top_level = _own_temp(tmp_path / ".c.tmp-3")
    elsewhere = _own_temp(tmp_path / "ledger" / ".d.tmp-4")
    outside = _own_temp(tmp_path.parent / f"{tmp_path.name}-outside" / ".e.tmp-5")
    (sets / "link").symlink_to(outside.parent, target_is_directory=True)
    control = _own_temp(sets / ".f.tmp-6")
    _age(user, wrong_text, linked_marker, top_level, elsewhere, outside, control)
    removed = cache_mod.clean_orphans(tmp_path)
    assert removed == [control]
    for folder in (user, wrong_text, linked_marker, top_level, elsewhere, outside):
        assert folder.is_dir(), folder


def test_generated_sets_carry_no_temporary_marker(coco_set, h36m_set):
    """A staged set is marked while it is written and unmarked before it is renamed into place."""
    for root in (coco_set, h36m_set):
        assert root.is_dir() and not (root / cache_mod.TEMP_MARKER).exists(), root
        assert not list(root.parent.glob(".*.tmp-*")) and not list(root.parent.glob(".*.old-*")), root


def test_a_folder_holding_other_things_is_never_cleaned(tmp_path):
    """``--cache-dir=~``: refused at start (the table's row), and even called directly the clean-up does
    nothing in a folder the suite never claimed."""
    config = _own_temp(tmp_path / "artifacts" / ".config.old-2024")
    _age(config)
    assert cache_mod.clean_orphans(tmp_path) == [] and config.is_dir()


def test_a_cache_of_the_previous_version_is_adopted_and_kept_warm(tmp_path):
    """A cache made before the marker (only the suite's own names at its top) keeps its entries: it is
    marked, not refused; its unmarked leftovers are left alone."""
    old = tmp_path / "cache"
    entry = _file(old / "artifacts" / "onnx" / "ab" / ("ab" + "0" * 62) / "model.onnx")
    leftover = _file(old / "artifacts" / "onnx" / "ab" / ".abcdef01-x" / "half.bin").parent
    _file(old / "digests.json", "{}")
    (old / "ledger").mkdir()
    _age(leftover)
    assert cache_mod.claim(old) == "adopted" and cache_mod.claim(old) == "own"
    assert cache_mod.clean_orphans(old) == [] and entry.is_file() and leftover.is_dir()


# ---- end to end: pytest itself, exit 4 and one clear line --------------------------------------------

def _pytest(args, tmp_path, extra_path=()):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, extra_path), str(REPO)]),
           "POSEGATE_CACHE_DIR": str(tmp_path / "cache")}
    for name in ("POSEGATE_DATA_ROOT", "POSEGATE_WEIGHTS_DIR", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _one_clear_line(run, fragment):
    out = run.stdout + run.stderr
    assert run.returncode == 4, out
    assert fragment in out and "INTERNALERROR" not in out and "Traceback" not in out, out
    assert len([line for line in out.splitlines() if line.startswith("ERROR")]) == 1, out


# five subprocesses in all (seconds each on a 2-core box); the table covers the rest in-process
@pytest.mark.parametrize("kind", ["baseline-folder", "corrupt-throughput-baseline", "cache-dir-holds-other-things",
                                  "data-root-is-a-loop"])
def test_pytest_stops_with_one_line_and_exit_4(kind, tmp_path):
    if kind == "baseline-folder":
        args, fragment = [f"--accuracy-baseline={tmp_path}"], "is a folder"
    elif kind == "corrupt-throughput-baseline":
        args, fragment = [f"--throughput-baseline={_file(tmp_path / 'b.json', '[1,')}"], "is not JSON"
    elif kind == "cache-dir-holds-other-things":  # --cache-dir=~: refused, and nothing in it is touched
        home = _home_like(tmp_path)
        args, fragment = [f"--cache-dir={home}"], "is not empty and is not a posegate cache"
    else:  # before: INTERNALERROR from pathlib's RuntimeError
        args, fragment = [f"--data-root={_loop(tmp_path)}"], "is or passes through a symbolic link loop"
    _one_clear_line(_pytest([*args, "tests/machinery/test_registry.py"], tmp_path), fragment)
    if kind == "cache-dir-holds-other-things":
        assert (home / ".config.old-2024" / "settings.ini").is_file() and sorted(os.listdir(home)) == [
            ".config.old-2024", "notes.txt"]


def test_path_options_work_with_a_space(tmp_path, coco_set):
    """``pytest --data-root /data`` (no test path): the entry-point plugin (pyproject.toml) registers the
    options before pytest reads the command line, so the value is not taken for a test path. The
    installed distribution is stood in for by its metadata on PYTHONPATH."""
    dist = tmp_path / "site" / "posegate-0.1.0.dist-info"
    _file(dist / "METADATA", "Metadata-Version: 2.1\nName: posegate\nVersion: 0.1.0\n")
    _file(dist / "entry_points.txt", "[pytest11]\nposegate = posegate.pytest_plugin\n")
    nested = _nested(tmp_path, coco_set)  # an existing folder with no dataset: stops at configure, fast
    run = _pytest(["--data-root", str(nested)], tmp_path, extra_path=[dist.parent])
    _one_clear_line(run, f"--data-root={nested}: no dataset recognised in it or its direct subfolders")
    assert "found one level further down, in " in run.stdout + run.stderr
    # the entry point is declared where pip reads it
    assert 'posegate = "posegate.pytest_plugin"' in (REPO / "pyproject.toml").read_text()


# ---- the session header says what was found ---------------------------------------------------------

def test_the_header_lists_datasets_and_checkpoints_or_says_synthetic_and_seeded(coco_set, tmp_path, monkeypatch):
    for name in ("POSEGATE_DATA_ROOT", "POSEGATE_WEIGHTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "data"
    shutil.copytree(coco_set, root / "coco-mini")
    weights = tmp_path / "weights"
    torch.save({"w": torch.ones(1)}, _file(weights / "lightweight_openpose_omz0001.pth"))
    ctx = RunContext.from_options(root, weights, None, tmp_path / "cache")
    ctx.found = inputs.check_data_root(ctx.data_root)
    lines = "\n".join(inputs.header_lines(ctx, MODELS.values()))
    identity = CocoKeypointDataset(root / "coco-mini").identity
    assert f"dataset [coco-keypoints]: {identity} (3 images)" in lines
    assert "dataset [h36m]: synthetic" in lines
    digest = file_digest(weights / "lightweight_openpose_omz0001.pth")[:12]
    assert f"checkpoint: lightweight_openpose_omz0001.pth@{digest}" in lines
    assert "seeded for higherhrnet_w32_512" in lines and "omz0001" not in lines.split("seeded for")[1]
    bare = "\n".join(inputs.header_lines(RunContext.from_options(cache_dir=tmp_path / "c"), MODELS.values()))
    assert "datasets: synthetic" in bare and "weights: seeded" in bare
