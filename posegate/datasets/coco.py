"""COCO person-keypoint datasets: a folder with ``annotations/person_keypoints_val2017.json``.

Images (``val2017/*.jpg``) and person detections (``detections/*.json``) are optional, so an
annotations-only folder is a valid dataset for metric checks that need no pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from functools import cached_property
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NamedTuple

import cv2
import numpy as np
from pycocotools.coco import COCO

from posegate.datasets.base import Dataset, DatasetError
from posegate.datasets.image_header import MAX_IMAGE_PIXELS, header_size
from posegate.storage import digests

ANNOTATION_FILE = Path("annotations") / "person_keypoints_val2017.json"
IMAGE_DIR = "val2017"
DETECTION_DIR = "detections"
OFFICIAL_VAL2017_IMAGES = 5000

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# 1-based keypoint pairs, as COCO's own category record stores them.
SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)
# COCOeval's per-keypoint sigmas (COCO order): a joint d px off scores exp(-d^2 / (2 * area * (2 * sigma)^2)).
OKS_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
PERSON_CATEGORY = {
    "id": 1, "name": "person", "supercategory": "person",
    "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(p) for p in SKELETON],
}

_IMAGE_KEYS = ("id", "file_name", "height", "width")
# What COCOeval reads from every ground-truth person for keypoint OKS.
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "keypoints", "num_keypoints", "area", "bbox", "iscrowd")


class ImageInfo(NamedTuple):
    file_name: str
    height: int
    width: int


def build_coco(data: dict) -> COCO:
    """A pycocotools COCO over an already parsed ground-truth dict, without its progress prints."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def read_annotation_file(path: Path) -> tuple[dict, str]:
    """Parse and check a person-keypoint ground-truth file; returns (data, sha256 hex of its bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():
            raise DatasetError(f"{path}: is a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise DatasetError(
            f"{path}: annotation file is missing; a COCO keypoint dataset needs "
            f"{ANNOTATION_FILE.as_posix()} (the official person_keypoints_val2017.json from "
            "annotations_trainval2017.zip)") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read annotation file ({exc})") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"{path}: not valid JSON ({exc}); the file is truncated or corrupt, download it again") from None
    check_ground_truth(data, path)
    return data, hashlib.sha256(raw).hexdigest()


def check_ground_truth(data, source) -> None:
    """Raise DatasetError unless ``data`` is a COCO person-keypoint ground truth."""
    if isinstance(data, list):
        if data and isinstance(data[0], dict) and "image_id" in data[0] and "score" in data[0]:
            raise DatasetError(
                f"{source}: is a results/detections list, not ground truth; pass the "
                "person_keypoints_*.json annotation file here")
        raise DatasetError(f"{source}: is a JSON list; a COCO ground truth is a JSON object")
    if not isinstance(data, dict):
        raise DatasetError(f"{source}: is a JSON {type(data).__name__}; a COCO ground truth is a JSON object")
    anns = data.get("annotations")
    if isinstance(anns, list) and anns and isinstance(anns[0], dict) and "caption" in anns[0]:
        raise DatasetError(f"{source}: is a COCO captions file; use person_keypoints_*.json instead")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(
            f"{source}: has no list {', '.join(repr(k) for k in missing)}; not a COCO ground truth, "
            "use person_keypoints_*.json")
    if not any(isinstance(c, dict) and "keypoints" in c for c in data["categories"]):
        raise DatasetError(
            f"{source}: categories carry no 'keypoints' (a COCO instances file?); "
            "use person_keypoints_*.json instead")
    _check_records(data["images"], _IMAGE_KEYS, "image", source)
    _check_records(anns, _ANNOTATION_KEYS, "annotation", source)
    image_ids: set[int] = set()
    for index, img in enumerate(data["images"]):
        problem = _image_problem(img)
        if problem is None and img["id"] in image_ids:
            problem = "is listed twice (a second entry would silently replace the first)"
        if problem:
            raise DatasetError(f"{source}: image #{index} (id {img['id']!r}) {problem}; fix the file or "
                               "download it again")
        image_ids.add(img["id"])
    ann_ids: set[int] = set()
    for index, ann in enumerate(anns):
        if isinstance(ann["keypoints"], list) and len(ann["keypoints"]) != 3 * len(KEYPOINT_NAMES):
            raise DatasetError(
                f"{source}: annotation {ann['id']} has {len(ann['keypoints'])} keypoint values, expected 51 "
                "(17 x [x, y, v]); not a COCO person-keypoint file")
        problem = _annotation_problem(ann)
        if problem is None and ann["id"] in ann_ids:
            problem = "is listed twice"
        if problem:
            raise DatasetError(f"{source}: annotation #{index} (id {ann['id']!r}) {problem}; fix the file or "
                               "download it again")
        ann_ids.add(ann["id"])
        if ann["image_id"] not in image_ids:
            raise DatasetError(f"{source}: annotation {ann['id']} refers to image {ann['image_id']}, "
                               "which is not in 'images'; the file is inconsistent, download it again")


def _is_int(value) -> bool:
    return type(value) is int  # not bool, not float, not "196141"


def _finite(value) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _image_problem(img: dict) -> str | None:
    if not _is_int(img["id"]):
        return f"has id {img['id']!r} ({type(img['id']).__name__}), not an integer"
    name = img["file_name"]
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return f"has file_name {name!r}, not a relative path inside {IMAGE_DIR}/"
    pure = PurePosixPath(name)
    if pure.is_absolute() or PureWindowsPath(name).drive or any(part in ("..", ".") for part in name.split("/")) \
            or "" in name.split("/"):
        return f"has file_name {name!r}, not a relative path inside {IMAGE_DIR}/"
    for key in ("height", "width"):
        if not _is_int(img[key]) or img[key] <= 0:
            return f"has {key} {img[key]!r}, not a positive integer"
    return None


def _annotation_problem(ann: dict) -> str | None:
    for key in ("id", "image_id", "category_id", "num_keypoints"):
        if not _is_int(ann[key]):
            return f"has {key} {ann[key]!r} ({type(ann[key]).__name__}), not an integer"
    if ann["iscrowd"] not in (0, 1) or not _is_int(ann["iscrowd"]):
        return f"has iscrowd {ann['iscrowd']!r}, not 0 or 1"
    keypoints = ann["keypoints"]
    if not isinstance(keypoints, list):
        return f"has keypoints of type {type(keypoints).__name__}, not a list"
    bad = next((i for i, v in enumerate(keypoints) if not _finite(v)), None)
    if bad is not None:
        return (f"has keypoint value {keypoints[bad]!r} at index {bad} ({KEYPOINT_NAMES[bad // 3]}), "
                "not a finite number")
    visibility = keypoints[2::3]
    bad = next((i for i, v in enumerate(visibility) if v not in (0, 1, 2)), None)
    if bad is not None:
        return f"has visibility {visibility[bad]!r} for {KEYPOINT_NAMES[bad]}, not 0, 1 or 2"
    if not _finite(ann["area"]) or ann["area"] < 0:
        return f"has area {ann['area']!r}, not a finite number >= 0"
    box = ann["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_finite(v) for v in box) or box[2] < 0 or box[3] < 0:
        return f"has bbox {box!r}, not 4 finite numbers [x, y, w, h] with w, h >= 0"
    return None


def _check_records(records, keys, kind, source) -> None:
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DatasetError(f"{source}: {kind} #{index} is not a JSON object")
        absent = [k for k in keys if k not in record]
        if absent:
            if kind == "annotation" and "keypoints" in absent:
                raise DatasetError(
                    f"{source}: annotations carry no 'keypoints' (a COCO instances file?); "
                    "use person_keypoints_*.json instead")
            raise DatasetError(f"{source}: {kind} #{index} lacks {', '.join(absent)}; "
                               "not a complete COCO ground truth, download it again")


def read_detections(path: Path) -> list[dict]:
    """Load a COCO results-format person detection file, checking every entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read detections ({exc}); regenerate or download the file") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: detections must be a JSON list of "
                           f"{{image_id, category_id, bbox, score}}, found a {type(data).__name__}")
    if not data:
        raise DatasetError(f"{path}: the detections list is empty, so a top-down model would see no person; "
                           "supply the detector's results for this dataset, or run with --boxes=ground-truth")
    for index, det in enumerate(data):
        problem = _detection_problem(det)
        if problem:
            raise DatasetError(f"{path}: detection #{index} {problem}; expected "
                               "{image_id, category_id, bbox [x, y, w, h], score} (COCO results format)")
    return data


def _detection_problem(det) -> str | None:
    if not isinstance(det, dict):
        return "is not a JSON object"
    absent = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
    if absent:
        return f"lacks {', '.join(absent)}"
    if not isinstance(det["image_id"], int) or not isinstance(det["category_id"], int):
        return "has a non-integer image_id or category_id"
    bbox = det["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"has bbox {bbox!r}, not 4 numbers"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"has bbox {bbox!r} with a negative width or height"
    if not _is_number(det["score"]):
        return f"has score {det['score']!r}, not a number"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _truncated(raw: bytes) -> bool:
    # Decoders fill a truncated JPEG with grey and only warn, so look for the end marker ourselves:
    # it must follow the last start-of-scan (an EXIF thumbnail's own end marker comes earlier).
    if raw[:2] == b"\xff\xd8":
        last_scan = raw.rfind(b"\xff\xda")
        return last_scan < 0 or raw.find(b"\xff\xd9", last_scan) < 0
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        return raw.rfind(b"IEND") < 0
    return False


def check_image_header(raw: bytes, path: Path) -> None:
    """Refuse an image whose header declares more than ``MAX_IMAGE_PIXELS`` pixels, or that
    has no JPEG or PNG header to read it from, before any decoder allocates for it."""
    declared = header_size(raw)
    if declared is None:
        raise DatasetError(f"{path}: cannot be decoded as a JPEG or PNG (no readable header; starts with "
                           f"{raw[:8]!r}); download it again")
    height, width = declared
    if height * width > MAX_IMAGE_PIXELS:
        raise DatasetError(f"{path}: its header declares {width}x{height} pixels ({height * width / 1e6:.0f} Mpx), "
                           f"more than the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} Mpx "
                           "(posegate.datasets.image_header.MAX_IMAGE_PIXELS); not decoded")


class CocoKeypointDataset(Dataset):
    """A COCO person-keypoint dataset folder; the annotation file is read and checked on construction."""

    kind = "coco-keypoints"

    def __init__(self, root: Path):
        super().__init__(root)
        self._data, self._sha256 = read_annotation_file(self.annotation_file)
        self._images = {img["id"]: img for img in self._data["images"]}
        self._check_images_complete()

    def _check_images_complete(self) -> None:
        """Images are all there or none is: a partial image folder would quietly shrink to an
        annotations-only set and its accuracy tests would vanish."""
        folder = self._root / IMAGE_DIR
        if not folder.is_dir():
            return
        absent = [self._images[i]["file_name"] for i in sorted(self._images)
                  if not (folder / self._images[i]["file_name"]).is_file()]
        if not absent:
            return
        fix = f"put them there, or remove {IMAGE_DIR}/ to use the folder for annotation-only checks"
        if len(absent) == len(self._images) and not any(folder.iterdir()):
            raise DatasetError(f"{folder}: is empty but {ANNOTATION_FILE.as_posix()} lists {len(absent)} images; {fix}")
        listed = ", ".join(absent[:10]) + (f" ... ({len(absent)} in all)" if len(absent) > 10 else "")
        raise DatasetError(f"{folder}: {len(absent)} of the {len(self._images)} images listed in "
                           f"{ANNOTATION_FILE.as_posix()} are missing: {listed}; {fix}")

    @property
    def annotation_file(self) -> Path:
        return self._root / ANNOTATION_FILE

    @cached_property
    def image_ids(self) -> list[int]:
        return sorted(self._images)

    @property
    def units(self) -> list[int]:
        return self.image_ids

    @cached_property
    def has_images(self) -> bool:
        return all(self.image_path(i).is_file() for i in self.image_ids)

    @cached_property
    def detections_file(self) -> Path | None:
        found = sorted((self._root / DETECTION_DIR).glob("*.json"))
        return found[0] if found else None

    @cached_property
    def content_digest(self) -> str:
        """SHA-256 over the annotation file and every image's bytes (memoised per file on size and
        mtime): a truncated or replaced image changes it, and with it every cache key and baseline
        identity built on the dataset."""
        h = hashlib.sha256(self._sha256.encode())
        if self.has_images:
            for i in self.image_ids:
                path = self.image_path(i)
                h.update(f"{path.name}:{digests.sha256(path)}\n".encode())
            digests.flush()
        return h.hexdigest()

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.content_digest[:8]}:{len(self._images)}img"

    @property
    def has_inputs(self) -> bool:
        """Whether inference can run on it (images present), beside metric-only uses."""
        return self.has_images

    @property
    def is_official(self) -> bool:
        """The full val2017: its 5000 images listed and present."""
        return len(self._images) == OFFICIAL_VAL2017_IMAGES and self.has_images

    @cached_property
    def coco(self) -> COCO:
        return build_coco(self._data)

    def image_info(self, image_id: int) -> ImageInfo:
        try:
            img = self._images[image_id]
        except KeyError:
            raise DatasetError(f"{self.annotation_file}: has no image with id {image_id}") from None
        return ImageInfo(img["file_name"], int(img["height"]), int(img["width"]))

    def image_path(self, image_id: int) -> Path:
        return self._root / IMAGE_DIR / self.image_info(image_id).file_name

    def annotations(self, image_id: int) -> list[dict]:
        self.image_info(image_id)
        # Copies, so a caller cannot alter the index that COCOeval later reads.
        return [dict(ann) for ann in self.coco.imgToAnns.get(image_id, [])]

    def load_detections(self) -> list[dict]:
        if self.detections_file is None:
            raise DatasetError(f"{self._root / DETECTION_DIR}: holds no *.json person detection file")
        detections = read_detections(self.detections_file)
        foreign = [i for i, det in enumerate(detections) if det["image_id"] not in self._images]
        if foreign:
            first = detections[foreign[0]]["image_id"]
            raise DatasetError(
                f"{self.detections_file}: {len(foreign)} of the {len(detections)} detections name no image of "
                f"{self.annotation_file} (the first: detection #{foreign[0]}, image_id {first}); they are "
                "another set's boxes: use this set's detector results, or filter the file to its images")
        return detections

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as BGR uint8, in the raw pixel orientation the annotations use."""
        info = self.image_info(image_id)
        path = self.image_path(image_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DatasetError(
                f"{path}: image file is missing (image {image_id} of {self.annotation_file.name}); put the "
                f"val2017 images in {path.parent} or use this dataset for annotation-only checks") from None
        if not raw or _truncated(raw):
            raise DatasetError(f"{path}: image file is truncated; download it again")
        check_image_header(raw, path)
        # COCO was annotated on the stored pixels, so EXIF rotation must not be applied.
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is None:
            raise DatasetError(f"{path}: cannot be decoded (corrupt or not an image); download it again")
        if image.shape[:2] != (info.height, info.width):
            raise DatasetError(
                f"{path}: decoded size {image.shape[0]}x{image.shape[1]} differs from the "
                f"{info.height}x{info.width} in {self.annotation_file.name}; the image is the wrong "
                "file or damaged, download it again")
        return image


def recognise(folder: Path) -> CocoKeypointDataset | None:
    """The dataset in ``folder`` if it carries a person-keypoint annotation file, else None.

    A folder that has the annotation file claims to be COCO, so a broken file raises DatasetError
    instead of being skipped silently.
    """
    try:
        claimed = os.path.lexists(Path(folder) / ANNOTATION_FILE)  # a link to nothing claims it too
    except OSError:
        return None
    return CocoKeypointDataset(folder) if claimed else None
