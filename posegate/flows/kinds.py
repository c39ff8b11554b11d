"""How a model's data moves: dataset -> samples -> engine input -> outputs -> results -> metric.

A flow is the task-specific part of a spec (bottom-up images, top-down crops on person boxes,
2D-to-3D sequences); the stage tests and the pipeline only ever call this interface, so a new kind
of model brings a flow, not special cases in the shared code. A sample is a small JSON-able value
(an image id, a person box, a sequence key), so it can key the cache and travel between workers.
Each flow's codec and records keep a written contract (posegate.flows.codec_contracts), checked when the
flow is built and where records are first made.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from posegate.flows import codec_contracts
from posegate.flows.codec_contracts import BottomUpCodec, Contract, SequencesCodec, TopDownCodec
from posegate.flows.topdown import oracle_people

# What a flow may declare and a test may ask for (``@pytest.mark.cases(kind, needs=...)``). A name outside
# this table is a typo: it would otherwise select no model, and its tests would vanish without a word.
CAPABILITIES = {
    "image": "whole images in: pixel-level preprocessing checks apply",
    "letterbox": "inputs padded to the engine shape: exact-zero padding and a padding record to check",
    "crop": "one crop per person box: crop geometry checks apply",
    "sequence": "keypoint sequences in, no pixels",
}


def check_capabilities(names, who: str) -> frozenset:
    """``names`` as a frozenset, or a ValueError naming ``who`` and each unknown name."""
    unknown = sorted(set(names) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"{who}: unknown capability {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted(CAPABILITIES))} (posegate.flows.kinds.CAPABILITIES)")
    return frozenset(names)


class MissingData(LookupError):
    """An input the run needs is absent (not malformed): dependants skip with this message."""


class Flow(ABC):
    dataset_kind: str = ""
    unit: str = "samples"  # what throughput counts
    capabilities: frozenset = frozenset()  # checks that apply, names of CAPABILITIES
    has_oracle: bool = False
    decode_cost_batch: int = 1  # batch whose decoding must cost less than its inference
    decode_needs_trained_weights: bool = False  # random weights make decoding unrepresentative
    copies: int = 1  # engine inputs per sample (2 where the batch also holds flipped copies)
    contract: Contract | None = None  # what the codec and its records must have (posegate.flows.codec_contracts)
    record_contract: type | None = None  # a stricter record Protocol than the contract's, where capabilities need one

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_capabilities(cls.capabilities, f"flow {cls.__name__}")

    def _bind_codec(self, codec, **positional: int) -> None:
        """Keep ``codec`` after checking it against the flow's contract: at the spec module's import, a
        missing or uncallable method is an error naming the codec, the flow and the method."""
        self.contract.check_codec(codec, positional)
        self.codec, self.codec_arity = codec, positional

    def _checked(self, made: tuple, count: int | None = None, record: type | None = None) -> tuple:
        """A codec call's (engine input or maps, records) after checking the records' types (once each)."""
        self.contract.check_records(self.codec, made[-1], record, count)
        return made

    def _preprocessed(self, made: tuple, raws: list) -> tuple:
        """A codec's (engine input, records) for ``raws``: one record per sample, each keeping the contract."""
        return self._checked(made, len(raws), self.record_contract)

    @abstractmethod
    def samples(self, dataset, profile, options: dict) -> list:
        """The evaluation units of a dataset, in a deterministic order."""

    @abstractmethod
    def load(self, dataset, sample):
        """The raw input of one sample, as ``preprocess`` takes it."""

    @abstractmethod
    def preprocess(self, raws: list, profile) -> tuple[np.ndarray, list]:
        """Engine input for a batch (which may hold extra copies, e.g. flipped) and one record per sample."""

    @abstractmethod
    def decode(self, outputs: dict, records: list, samples: list) -> list:
        """Results of a batch, in the form the spec's metric scores."""

    def finalize(self, results: list) -> list:
        """A whole dataset's results, once every batch (and shard) is decoded -> the results scored; e.g.
        per-image NMS across crops that batches and shards split. Must give the same for any split."""
        return results

    def units(self, x: np.ndarray, records: list) -> int:
        """How many throughput units one engine call on ``x`` processes."""
        return len(records)

    def check_results(self, results: list, records: list, samples: list) -> list[str]:
        """Problems with decoded results (empty = valid); the postprocess stage asserts none."""
        return []

    def oracle(self, dataset) -> list:
        raise NotImplementedError(f"{type(self).__name__} has no decoder oracle")

    def strata(self, dataset, samples: list) -> dict[str, list] | None:
        """Groups of samples the metric is also reported for (e.g. by input shape bucket); None = none."""
        return None

    def official_problem(self, dataset, options: dict) -> str | None:
        """Why this run's inputs are not the official protocol's, beyond the dataset itself; None if they are."""
        return None

    def identity(self, options: dict) -> dict:
        """Run options that change samples or results (part of every prediction's cache key)."""
        return {}


# ------------------------------------------------------------------------------------------- COCO

def check_coco_results(results: list, sizes: dict, windows: list | None = None,
                       missing_at_window_corner: bool = False) -> list[str]:
    """COCO keypoint results: 17 (x, y, v) inside their image, missing ones (0, 0, 0), finite scores.

    ``windows`` (one (x0, y0, x1, y1) per result) replaces the image as the region keypoints must lie in;
    ``missing_at_window_corner``: missing ones are (x0, y0, 0) instead (HigherHRNet's upstream format).
    """
    problems = []
    for i, r in enumerate(results):
        kp = np.asarray(r["keypoints"], float).reshape(17, 3)
        found = kp[:, 2] > 0
        w, h = sizes[r["image_id"]]
        x0, y0, x1, y1 = (0.0, 0.0, w, h) if windows is None else windows[i]
        if r["category_id"] != 1 or not np.isfinite(r["score"]) or r["score"] < 0:
            problems.append(f"image {r['image_id']}: category {r['category_id']} score {r['score']}")
        if missing_at_window_corner:
            if np.any(kp[~found, 2] != 0) or np.any(np.abs(kp[~found, :2] - (x0, y0)) > 1e-3):
                problems.append(f"image {r['image_id']}: missing keypoints must be ({x0:g}, {y0:g}, 0)")
        elif np.any(kp[~found] != 0):
            problems.append(f"image {r['image_id']}: missing keypoints must be (0, 0, 0)")
        if not np.all(np.isfinite(kp)):
            problems.append(f"image {r['image_id']}: non-finite keypoints")
        elif not np.all((kp[found, 0] >= x0) & (kp[found, 0] <= x1) & (kp[found, 1] >= y0) & (kp[found, 1] <= y1)):
            where = (f"the {w}x{h} image" if windows is None
                     else f"the crop window {[round(v, 1) for v in (x0, y0, x1, y1)]}")
            problems.append(f"image {r['image_id']}: keypoints outside {where}")
    return problems


class BottomUp(Flow):
    """Whole images in, every person out: the codec groups keypoints itself (OpenPose, HigherHRNet).
    Its methods and records: posegate.flows.codec_contracts.BottomUpCodec, ImageRecord (LetterboxRecord when
    letterboxed).
    """
    dataset_kind = "coco-keypoints"
    unit = "img"
    capabilities = frozenset({"image", "letterbox"})
    has_oracle = True
    decode_needs_trained_weights = True  # noise maps hold hundreds of peaks per channel
    contract = codec_contracts.BOTTOM_UP

    def __init__(self, codec: BottomUpCodec, decode_outputs: tuple[str, ...], stride: int, copies: int = 1,
                 capabilities: frozenset | None = None):
        # copies > 1: the codec's engine batch holds every sample, then each further copy of them all
        # (HigherHRNet's flipped images), and decode gets one sample's copies stacked on a first axis
        self.decode_outputs, self.stride, self.copies = decode_outputs, stride, copies
        if capabilities is not None:
            self.capabilities = check_capabilities(capabilities, f"{type(self).__name__}(capabilities=...)")
        self._bind_codec(codec, decode=len(decode_outputs) + 1)  # one map per decoded output, then the record
        # letterboxed inputs are checked for exactly zero padding, which the records locate
        self.record_contract = codec_contracts.LetterboxRecord if "letterbox" in self.capabilities else None

    def samples(self, dataset, profile, options):
        return [int(i) for i in dataset.image_ids]

    def load(self, dataset, sample):
        return dataset.load_image(sample)

    def from_image(self, image):
        return image

    def preprocess(self, raws, profile):
        return self._preprocessed(self.codec.preprocess_batch(raws, profile.preprocess), raws)

    def decode(self, outputs, records, samples, stride=None):
        """``stride``: of the maps, when not the network's (the oracle draws in the image frame)."""
        results, n = [], len(records)
        for i, (image_id, record) in enumerate(zip(samples, records)):
            maps = [outputs[o][i] if self.copies == 1 else outputs[o][i::n] for o in self.decode_outputs]
            results += [{"image_id": int(image_id), "category_id": 1, **p}
                        for p in self.codec.decode(*maps, record, stride=stride or self.stride)]
        return results

    def check_results(self, results, records, samples):
        sizes = {int(i): (r.orig_w, r.orig_h) for i, r in zip(samples, records)}
        window = getattr(self.codec, "result_window", None)  # results may leave the image (HigherHRNet)
        if window is None:
            return check_coco_results(results, sizes)
        by_image = {int(i): window(r) for i, r in zip(samples, records)}
        return check_coco_results(results, sizes, [by_image[r["image_id"]] for r in results],
                                  missing_at_window_corner=True)

    def strata(self, dataset, samples):
        """Images grouped by the codec's ``stratum(height, width)`` where it has one (an input bucket)."""
        stratum = getattr(self.codec, "stratum", None)
        if stratum is None:
            return None
        groups: dict[str, list] = {}
        for s in samples:
            info = dataset.image_info(s)
            groups.setdefault(stratum(info.height, info.width), []).append(s)
        return dict(sorted(groups.items()))

    def oracle(self, dataset):
        results = []
        for image_id in dataset.image_ids:
            outputs, records, stride = self.oracle_outputs(dataset, [image_id])
            results += self.decode(outputs, records, [image_id], stride)
        return results

    def oracle_outputs(self, dataset, samples) -> tuple:
        """Ground truth encoded as one image's decoded outputs, its records and the maps' stride: the
        stand-in for trained outputs (decoder oracle; decode-cost timing without trained weights)."""
        if len(samples) != 1:
            raise ValueError("the oracle encodes one image per batch")
        info = dataset.image_info(samples[0])
        *maps, rec, stride = self.codec.encode_ground_truth(dataset.annotations(samples[0]), info.height, info.width)
        self._checked(([rec],))
        return {n: m[None] if self.copies == 1 else m for n, m in zip(self.decode_outputs, maps)}, [rec], stride


class TopDown(Flow):
    """One crop per person box (detections, or ground-truth boxes on request), batched across images.

    The codec owns the crop geometry and decoding (posegate.flows.codec_contracts.TopDownCodec: crops and one
    CropRecord per box, one result per record, the oracle's heatmaps; optionally a per-image finalize
    over a whole dataset, SimpleBaseline's OKS-NMS). posegate.flows.topdown holds the shared geometry, record
    type and oracle encoder. A profile's ``preprocess`` names the codec's test-time recipe (e.g. with or
    without flip test).
    """
    dataset_kind = "coco-keypoints"
    unit = "crops"
    capabilities = frozenset({"image", "crop"})
    has_oracle = True
    decode_cost_batch = 64
    contract = codec_contracts.TOP_DOWN

    def __init__(self, codec: TopDownCodec, output: str):
        self.output = output
        self._bind_codec(codec)

    def samples(self, dataset, profile, options):
        boxes = options.get("boxes", "detections")
        if boxes == "ground-truth":
            # people without keypoints are ignored by COCOeval: a crop on them could only add a false positive
            found = [{"image_id": int(a["image_id"]), "bbox": [float(v) for v in a["bbox"]], "score": 1.0}
                     for i in dataset.image_ids for a in oracle_people(dataset.annotations(i))]
        else:
            if dataset.detections_file is None:
                raise MissingData(f"{dataset.root}/detections/ holds no person detection file: put "
                                  "COCO_val2017_detections_AP_H_56_person.json (COCO results format) there, "
                                  "or run with --boxes=ground-truth")
            known = set(dataset.image_ids)
            # upstream keeps every person detection, with no score threshold
            found = [{"image_id": int(d["image_id"]), "bbox": [float(v) for v in d["bbox"]], "score": float(d["score"])}
                     for d in dataset.load_detections() if d["category_id"] == 1 and d["image_id"] in known]
        # by image, best first; stable, so equal scores keep the file's order on every run and worker
        return sorted(found, key=lambda s: (s["image_id"], -s["score"]))

    def load(self, dataset, sample):
        return dataset.load_image(sample["image_id"]), sample["bbox"], sample["score"], sample["image_id"]

    def from_image(self, image):
        h, w = image.shape[:2]
        return image, [0.0, 0.0, float(w), float(h)], 1.0, 0

    def preprocess(self, raws, profile):
        return self._preprocessed(self.codec.preprocess_crops(raws, profile.preprocess), raws)

    def decode(self, outputs, records, samples):
        return self.codec.decode_crops(outputs[self.output], records)

    def finalize(self, results):
        """The codec's per-image finalisation (``finalize(results)``; none where the codec has none)."""
        finalize = getattr(self.codec, "finalize", None)
        return results if finalize is None else finalize(results)

    def check_results(self, results, records, samples):
        # a crop may reach beyond its image (upstream does not clip), so keypoints are held to the crop
        problems = check_coco_results(results, {r.image_id: (r.orig_w, r.orig_h) for r in records},
                                      windows=[r.window for r in records])
        if len(results) != len(samples):
            problems.append(f"{len(results)} people decoded from {len(samples)} boxes")
        return problems

    def oracle(self, dataset):
        results = []
        for image_id in dataset.image_ids:
            info = dataset.image_info(image_id)
            heatmaps, records = self._checked(self.codec.encode_ground_truth(dataset.annotations(image_id),
                                                                             info.height, info.width, image_id))
            if records:
                results += self.codec.decode_crops(heatmaps, records)
        return self.finalize(results)

    def official_problem(self, dataset, options):
        if options.get("boxes", "detections") != "detections":
            return "the official protocol uses the standard person detections, not ground-truth boxes"
        if dataset.detections_file is None:
            return "no person detection file under detections/"
        return None

    def identity(self, options):
        return {"boxes": options.get("boxes", "detections")}


# -------------------------------------------------------------------------------------- sequences

class Sequences(Flow):
    """2D keypoint sequences in, 3D poses out (VideoPose3D); the codec pads, flips and trims.

    The codec gives ``preprocess_batch(raws, recipe)`` -> (engine input, one record per sequence with
    its ``frames``) and ``decode_batch(output, records)`` -> one [frames, 17, 3] array per sequence
    (posegate.flows.codec_contracts.SequencesCodec).
    """
    dataset_kind = "h36m"
    unit = "frames"
    capabilities = frozenset({"sequence"})
    contract = codec_contracts.SEQUENCES

    def __init__(self, codec: SequencesCodec, output: str):
        self.output = output
        self._bind_codec(codec)

    def samples(self, dataset, profile, options):
        return [list(k) for k in dataset.sequences]

    def load(self, dataset, sample):
        return dataset.inputs(tuple(sample))

    def preprocess(self, raws, profile):
        return self._preprocessed(self.codec.preprocess_batch(raws, profile.preprocess), raws)

    def decode(self, outputs, records, samples):
        poses = self.codec.decode_batch(outputs[self.output], records)
        return [{"key": list(s), "poses_3d": p} for s, p in zip(samples, poses)]

    def units(self, x, records):
        # as the seed counts: every frame the engine processes, flipped copies and padding included
        return int(x.shape[0] * x.shape[1])

    def check_results(self, results, records, samples):
        # the root is left as predicted: upstream zeroes only the targets' root, so its error counts
        problems = []
        for r, rec in zip(results, records):
            p = np.asarray(r["poses_3d"])
            if p.shape != (rec.frames, 17, 3):
                problems.append(f"{r['key']}: poses {p.shape}, want ({rec.frames}, 17, 3)")
            elif not np.isfinite(p).all():
                problems.append(f"{r['key']}: non-finite poses")
        if len(results) != len(samples):
            problems.append(f"{len(results)} sequences decoded from {len(samples)}")
        return problems

    def official_problem(self, dataset, options):
        if getattr(dataset, "keypoints", None) != "cpn_ft_h36m_dbb":
            return ("the official protocol lifts the CPN detections (data_2d_h36m_cpn_ft_h36m_dbb.npz), "
                    "not ground-truth 2D")
        return None
