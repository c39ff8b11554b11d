"""The written contracts between a flow and its model's codec, and the records the codec makes.

A flow (posegate.flows.kinds) calls its codec by names that differ by flow and reads fields of the records
the codec's preprocessing returns; before these Protocols nothing stated either, and a new model failed
mid-run. Each flow's codec has one Protocol of the methods the flow always calls and one of those it
calls where present; each record kind has one Protocol of what shared code reads from it.

Where they are checked: a codec when its flow is built, which the spec module does at import, so a
missing method, one that is not callable or one that cannot take the flow's arguments is an error at
import naming the codec, the flow and the method; a record where it is first produced (a flow's
``preprocess`` and oracle), once per record type, naming the codec and the missing fields.
A codec may be a module (as every model's is) or an object; its methods are called without ``self``.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class ContractError(TypeError):
    """A codec or a record that does not do what its flow relies on; the message names what is missing."""


# ------------------------------------------------------------------------------------------ records

class ImageRecord(Protocol):
    """How one whole image maps into the engine input (bottom-up flows).

    Image and input coordinates are (x, y) pixels, any leading shape; ``to_original`` undoes ``to_input``
    exactly (the preprocess stage tests it on every image's labelled points). Optional: ``bucket``, the
    input bucket an image went to (reported by the preprocess stage where present).
    """
    orig_w: int  # the image's width in pixels, before any resize
    orig_h: int  # its height

    def to_input(self, xy) -> np.ndarray:
        """Image pixels -> engine input pixels."""

    def to_original(self, xy) -> np.ndarray:
        """Engine input pixels -> image pixels: the exact inverse of ``to_input``."""


class LetterboxRecord(ImageRecord, Protocol):
    """An image resized into a padded input (flows with the "letterbox" capability): the padding is where
    the input must be exactly zero."""
    input_h: int  # the engine input's height, padding included
    input_w: int
    top: int  # rows of padding above the resized image
    bottom: int
    left: int  # columns of padding left of it
    right: int


class CropRecord(Protocol):
    """One person crop of an image (top-down flows); posegate.flows.topdown.CropRecord is the shared one."""
    image_id: int  # the COCO image the crop was cut from: results are scored, and finalised, per image
    orig_w: int  # that image's width in pixels
    orig_h: int

    @property
    def window(self) -> tuple[float, float, float, float]:
        """The crop's extent in the image (x0, y0, x1, y1): where its keypoints may land (it may reach
        beyond the image: upstream does not clip)."""

    def to_input(self, xy) -> np.ndarray:
        """Image pixels -> crop (engine input) pixels."""

    def to_original(self, xy) -> np.ndarray:
        """Crop pixels -> image pixels: the exact inverse of ``to_input``."""


class SequenceRecord(Protocol):
    """One 2D keypoint sequence of a batch (sequence flows)."""
    frames: int  # the input sequence's length, which its decoded 3D poses must have


# ------------------------------------------------------------------------------------------- codecs

class BottomUpCodec(Protocol):
    """What posegate.flows.kinds.BottomUp calls: whole images in, every person out."""

    def preprocess_batch(self, raws: list, profile: str) -> tuple[np.ndarray, list[ImageRecord]]:
        """HxWx3 uint8 BGR images and the profile's recipe name -> the engine input (every image, then each
        further copy of them all when the flow's ``copies`` > 1) and one record per image."""

    def decode(self, *maps_and_record, stride: int) -> list[dict]:
        """One image's maps, one per flow ``decode_outputs`` in that order (its copies stacked on a first
        axis when ``copies`` > 1), then its record; ``stride``: input pixels per map pixel -> COCO results
        without ``image_id``: dicts with ``keypoints`` (17 x (x, y, v) in the image) and ``score``."""

    def encode_ground_truth(self, annotations: list, height: int, width: int) -> tuple:
        """The decoder oracle: one image's COCO annotations -> (*maps, record, stride), the maps a perfect
        network would give, in ``decode``'s order."""


class BottomUpCodecOptions(Protocol):
    """What BottomUp calls only where the codec has it."""

    def result_window(self, record) -> tuple[float, float, float, float]:
        """Where results may lie in the image (x0, y0, x1, y1) when not inside it; missing keypoints then
        sit at (x0, y0) (HigherHRNet's upstream format)."""

    def stratum(self, height: int, width: int) -> str:
        """The group an image of that size is also reported in (an input bucket)."""


class TopDownCodec(Protocol):
    """What posegate.flows.kinds.TopDown calls: one crop per person box, batched across images.
    posegate.flows.topdown holds the shared geometry, record type and oracle encoder."""

    def preprocess_crops(self, raws: list, profile: str) -> tuple[np.ndarray, list[CropRecord]]:
        """(image BGR, box xywh, detection score, image id) per person and the profile's recipe name ->
        the engine input (with mirrored copies after the crops where the recipe flips) and one record each."""

    def decode_crops(self, output: np.ndarray, records: list) -> list[dict]:
        """A batch's output and its records -> one COCO result per record, in order, with ``image_id``,
        ``category_id``, ``keypoints`` and ``score``."""

    def encode_ground_truth(self, annotations: list, height: int, width: int, image_id: int) -> tuple:
        """The decoder oracle: one image's annotations -> (heatmaps, records) a perfect network would give
        on crops of its ground-truth people."""


class TopDownCodecOptions(Protocol):
    """What TopDown calls only where the codec has it."""

    def finalize(self, results: list) -> list:
        """A whole dataset's results, after every batch and shard -> those scored, per image (OKS-NMS and
        rescoring where upstream does them); the same for any split into batches and shards."""


class SequencesCodec(Protocol):
    """What posegate.flows.kinds.Sequences calls: 2D keypoint sequences in, 3D poses out."""

    def preprocess_batch(self, raws: list, profile: str) -> tuple[np.ndarray, list[SequenceRecord]]:
        """[T, 17, 2] sequences and the profile's recipe name -> the engine input and one record each."""

    def decode_batch(self, output: np.ndarray, records: list) -> list[np.ndarray]:
        """A batch's output and its records -> one [frames, 17, 3] array per record."""


class NoOptions(Protocol):
    """A flow that calls nothing optional."""


# -------------------------------------------------------------------------------------------- checks

def _protocols(proto: type) -> list[type]:
    return [c for c in reversed(proto.__mro__) if getattr(c, "_is_protocol", False) and c is not Protocol]


def protocol_methods(proto: type) -> dict[str, types.FunctionType]:
    """The methods a Protocol (and the Protocols it extends) declares, by name."""
    found: dict[str, types.FunctionType] = {}
    for c in _protocols(proto):
        found.update({n: f for n, f in vars(c).items() if inspect.isfunction(f) and not n.startswith("_")})
    return found


def record_fields(proto: type) -> tuple[str, ...]:
    """The attributes a record Protocol declares: its fields, properties and methods."""
    names: dict[str, None] = {}
    for c in _protocols(proto):
        names.update(dict.fromkeys(inspect.get_annotations(c)))
        names.update(dict.fromkeys(n for n, v in vars(c).items()
                                   if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, property))))
    return tuple(names)


def codec_name(codec) -> str:
    if isinstance(codec, types.ModuleType):
        return codec.__name__
    cls = codec if isinstance(codec, type) else type(codec)
    return f"{cls.__module__}.{cls.__qualname__}"


def _call_problem(name: str, fn, declared, positional: int | None) -> str | None:
    """Why ``fn`` cannot be called as the flow calls ``declared`` (without self), or None."""
    params = list(inspect.signature(declared).parameters.values())[1:]
    named = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keywords = [p.name for p in params if p.kind == p.KEYWORD_ONLY]
    count = len(named) if positional is None else positional
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable without a signature: nothing to hold it to
        return None
    try:
        signature.bind(*range(count), **dict.fromkeys(keywords))
    except TypeError as e:
        shown = (named if positional is None else [f"<{count} positional>"]) + [f"{k}=..." for k in keywords]
        return f"{name}{signature} cannot be called as the flow calls it, {name}({', '.join(shown)}): {e}"
    return None


@dataclass
class Contract:
    """One flow's contract: its codec's required and optional methods, and its records' Protocol."""
    flow: str
    codec: type
    options: type
    record: type
    _passed: set = field(default_factory=set, repr=False)  # record types already found complete

    def check_codec(self, codec, positional: dict[str, int] | None = None) -> None:
        """Raise ContractError naming every required method ``codec`` lacks, and every method (optional ones
        where present) that is not callable or cannot take the flow's arguments. ``positional`` overrides
        a method's positional argument count where the flow decides it (BottomUp's maps per output)."""
        positional = positional or {}
        missing, wrong = [], []
        required = protocol_methods(self.codec)
        for name, declared in {**protocol_methods(self.options), **required}.items():
            fn = getattr(codec, name, None)
            if fn is None:
                if name in required:
                    missing.append(name)
            elif not callable(fn):
                wrong.append(f"{name} is a {type(fn).__name__}, not callable")
            else:
                problem = _call_problem(name, fn, declared, positional.get(name))
                if problem:
                    wrong.append(problem)
        if missing or wrong:
            said = ([f"lacks {', '.join(missing)}"] if missing else []) + wrong
            raise ContractError(f"codec {codec_name(codec)} does not keep the {self.flow} flow's contract "
                                f"(posegate.flows.codec_contracts.{self.codec.__name__}): {'; '.join(said)}")

    def check_records(self, codec, records, record: type | None = None, count: int | None = None) -> None:
        """Raise ContractError where a record type lacks a field of ``record`` (the contract's own by default)
        or is not a dataclass; ``count``: how many records the call had to make (one per sample)."""
        record = record or self.record
        if count is not None and len(records) != count:
            raise ContractError(f"codec {codec_name(codec)} made {len(records)} records for {count} "
                                f"{self.flow} samples: its contract is one record per sample")
        for r in records:
            key = (type(r), record)
            if key in self._passed:
                continue
            name = type(r).__qualname__
            if not dataclasses.is_dataclass(r):
                raise ContractError(f"codec {codec_name(codec)} made a {name} record, not a dataclass: the "
                                    "prediction cache stores records as dataclass fields, never as pickles")
            missing = [f for f in record_fields(record) if not hasattr(r, f)]
            if missing:
                raise ContractError(f"codec {codec_name(codec)} made a {name} record without {', '.join(missing)}: "
                                    f"the {self.flow} flow's records carry {', '.join(record_fields(record))} "
                                    f"(posegate.flows.codec_contracts.{record.__name__})")
            self._passed.add(key)


BOTTOM_UP = Contract("BottomUp", BottomUpCodec, BottomUpCodecOptions, ImageRecord)
TOP_DOWN = Contract("TopDown", TopDownCodec, TopDownCodecOptions, CropRecord)
SEQUENCES = Contract("Sequences", SequencesCodec, NoOptions, SequenceRecord)
