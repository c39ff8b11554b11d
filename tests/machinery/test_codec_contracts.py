"""Written codec contracts (posegate/codec_contracts.py): every model's codec and records keep their flow's,
and a codec or record that does not is refused where it first appears, naming what is missing."""
from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest

from models import MODELS
from posegate.flows import codec_contracts
from posegate.flows.codec_contracts import ContractError, protocol_methods, record_fields
from posegate.flows.kinds import BottomUp, Sequences, TopDown

STAGE = "weights"
pytestmark = pytest.mark.stage

CONTRACTS = (codec_contracts.BOTTOM_UP, codec_contracts.TOP_DOWN, codec_contracts.SEQUENCES)


class _IdentityMaps:
    """The records' point mappings (identity: the contract checks they exist, not what they compute)."""

    def to_input(self, xy):
        return np.asarray(xy, np.float64)

    def to_original(self, xy):
        return np.asarray(xy, np.float64)


@dataclass(frozen=True)
class _Crop(_IdentityMaps):
    image_id: int
    orig_w: int
    orig_h: int
    window: tuple = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class _CropWithoutWindow(_IdentityMaps):
    image_id: int
    orig_w: int
    orig_h: int


@dataclass(frozen=True)
class _Image(_IdentityMaps):
    orig_w: int
    orig_h: int


def _topdown_codec(name="models.handmade.codec", record=_Crop, **replace) -> types.ModuleType:
    """A hand-written top-down codec module keeping the contract; ``replace`` swaps or (None) drops methods."""
    codec = types.ModuleType(name)
    codec.preprocess_crops = lambda raws, profile: (np.zeros((len(raws), 3, 8, 6), np.float32),
                                                    [record(int(r[3]), 64, 48) for r in raws])
    codec.decode_crops = lambda output, records: [{"image_id": r.image_id} for r in records]
    codec.encode_ground_truth = lambda annotations, height, width, image_id: (np.zeros((0, 17, 2, 2)), [])
    for method, fn in replace.items():
        if fn is None:
            delattr(codec, method)
        else:
            setattr(codec, method, fn)
    return codec


def _bottomup_codec(**replace) -> types.ModuleType:
    codec = types.ModuleType("models.handmade_bottomup.codec")

    def decode(heatmaps, pafs, record, stride=8):
        return []
    codec.preprocess_batch = lambda raws, profile: (np.zeros((len(raws), 3, 8, 8), np.float32),
                                                    [_Image(im.shape[1], im.shape[0]) for im in raws])
    codec.decode = decode
    codec.encode_ground_truth = lambda annotations, height, width, **kw: (None, None, _Image(width, height), 8)
    for method, fn in replace.items():
        setattr(codec, method, fn)
    return codec


def _crop_raw(image_id=3):
    return np.zeros((48, 64, 3), np.uint8), [1.0, 2.0, 10.0, 20.0], 0.9, image_id


PROFILE = types.SimpleNamespace(preprocess="upstream")


# ------------------------------------------------------------------------------------- the real codecs

@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_models_codec_keeps_its_flows_contract(name):
    flow = MODELS[name].flow
    assert flow.contract in CONTRACTS, f"{name}: {type(flow).__name__} declares no codec contract"
    flow.contract.check_codec(flow.codec, flow.codec_arity)  # what the spec's import already did
    for method in protocol_methods(flow.contract.codec):
        assert callable(getattr(flow.codec, method)), f"{name}: {method}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_models_records_carry_their_contracts_fields(name):
    spec = MODELS[name]
    flow, profile = spec.flow, next(p for p in spec.profiles if p.default)
    if isinstance(flow, Sequences):
        raws = [np.zeros((5, 17, 2), np.float32)]
    else:
        raws = [flow.from_image(np.full((90, 120, 3), 128, np.uint8))]
    _, records = flow.preprocess(raws, profile)
    wanted = record_fields(flow.record_contract or flow.contract.record)
    assert len(records) == 1
    assert [f for f in wanted if not hasattr(records[0], f)] == []


def test_every_contract_method_says_what_it_means():
    protocols = [p for c in CONTRACTS for p in (c.codec, c.options, c.record)] + [codec_contracts.LetterboxRecord]
    for proto in protocols:
        for method, fn in protocol_methods(proto).items():
            assert (fn.__doc__ or "").strip(), f"{proto.__name__}.{method} has no docstring"


# -------------------------------------------------------------------------------- codecs, at construction

def test_a_faithful_handmade_codec_builds_its_flow_and_preprocesses():
    flow = TopDown(_topdown_codec(), "out")
    x, records = flow.preprocess([_crop_raw(), _crop_raw(4)], PROFILE)
    assert x.shape[0] == 2 and [r.image_id for r in records] == [3, 4]
    BottomUp(_bottomup_codec(), decode_outputs=("h", "p"), stride=8, capabilities=frozenset({"image"}))
    Sequences(types.SimpleNamespace(preprocess_batch=lambda raws, recipe: (None, []),
                                    decode_batch=lambda output, records: []), "out")


@pytest.mark.parametrize("method", ["preprocess_crops", "decode_crops", "encode_ground_truth"])
def test_a_codec_missing_a_method_is_refused_naming_codec_flow_and_method(method):
    with pytest.raises(ContractError, match=rf"codec models\.handmade\.codec .*TopDown flow.* lacks {method}"):
        TopDown(_topdown_codec(**{method: None}), "out")


def test_a_sequences_codec_missing_its_decode_is_refused():
    with pytest.raises(ContractError, match=r"Sequences flow.* lacks decode_batch"):
        Sequences(types.SimpleNamespace(preprocess_batch=lambda raws, recipe: (None, [])), "out")


def test_every_missing_method_is_named_at_once():
    with pytest.raises(ContractError, match="lacks preprocess_crops, decode_crops, encode_ground_truth"):
        TopDown(types.ModuleType("models.empty.codec"), "out")


def test_a_method_with_the_wrong_arity_is_refused():
    with pytest.raises(ContractError, match=r"decode_crops\(output\) cannot be called as the flow calls it"):
        TopDown(_topdown_codec(decode_crops=lambda output: []), "out")
    with pytest.raises(ContractError, match=r"encode_ground_truth.*cannot be called"):
        TopDown(_topdown_codec(encode_ground_truth=lambda annotations, height, width: None), "out")


def test_bottomup_decode_takes_one_map_per_decoded_output_then_the_record_and_a_stride():
    codec = _bottomup_codec()
    BottomUp(codec, decode_outputs=("h", "p"), stride=8)
    with pytest.raises(ContractError, match=r"decode\(heatmaps, pafs, record, stride=8\) cannot be called"):
        BottomUp(codec, decode_outputs=("h", "p", "extra"), stride=8)

    def no_stride(heatmaps, pafs, record):
        return []
    with pytest.raises(ContractError, match="stride"):
        BottomUp(_bottomup_codec(decode=no_stride), decode_outputs=("h", "p"), stride=8)


def test_a_method_that_is_not_callable_is_refused():
    with pytest.raises(ContractError, match="decode_crops is a int, not callable"):
        TopDown(_topdown_codec(decode_crops=3), "out")


def test_optional_methods_may_be_absent_but_not_wrong():
    TopDown(_topdown_codec(), "out")  # no finalize: results are scored as decoded
    TopDown(_topdown_codec(finalize=lambda results: results), "out")
    with pytest.raises(ContractError, match=r"finalize\(results, threshold\) cannot be called"):
        TopDown(_topdown_codec(finalize=lambda results, threshold: results), "out")
    with pytest.raises(ContractError, match="stratum"):
        BottomUp(_bottomup_codec(stratum=lambda h: "x"), decode_outputs=("h", "p"), stride=8)


def test_a_spec_module_with_a_broken_codec_fails_at_import(tmp_path, monkeypatch):
    (tmp_path / "broken_spec.py").write_text(
        "import types\nfrom posegate.flows.kinds import TopDown\n"
        "codec = types.ModuleType('models.broken_spec.codec')\n"
        "codec.preprocess_crops = lambda raws, profile: None\n"
        "FLOW = TopDown(codec, 'out')\n")
    spec = importlib.util.spec_from_file_location("broken_spec", tmp_path / "broken_spec.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "broken_spec", module)
    with pytest.raises(ContractError, match=r"models\.broken_spec\.codec .* lacks decode_crops, encode_ground_truth"):
        spec.loader.exec_module(module)


# ------------------------------------------------------------------------------ records, where first made

def test_a_record_missing_a_field_is_refused_naming_it():
    flow = TopDown(_topdown_codec(name="models.nowindow.codec", record=_CropWithoutWindow), "out")
    with pytest.raises(ContractError, match=r"models\.nowindow\.codec made a _CropWithoutWindow record without "
                                            r"window: the TopDown flow's records carry image_id, orig_w"):
        flow.preprocess([_crop_raw()], PROFILE)


def test_a_record_that_is_not_a_dataclass_is_refused():
    def plain(image_id, w, h):
        return types.SimpleNamespace(image_id=image_id, orig_w=w, orig_h=h, window=(0, 0, 1, 1),
                                     to_input=lambda xy: xy, to_original=lambda xy: xy)
    flow = TopDown(_topdown_codec(record=plain), "out")
    with pytest.raises(ContractError, match="SimpleNamespace record, not a dataclass: the prediction cache"):
        flow.preprocess([_crop_raw()], PROFILE)


def test_one_record_per_sample():
    codec = _topdown_codec()
    codec.preprocess_crops = lambda raws, profile: (np.zeros((1, 3, 8, 6), np.float32), [_Crop(1, 64, 48)] * 2)
    with pytest.raises(ContractError, match="made 2 records for 1 TopDown samples"):
        TopDown(codec, "out").preprocess([_crop_raw()], PROFILE)


def test_letterboxed_records_must_locate_their_padding():
    image = np.zeros((10, 12, 3), np.uint8)
    # the same records keep the plain image contract...
    BottomUp(_bottomup_codec(), ("h", "p"), 8, capabilities=frozenset({"image"})).preprocess([image], PROFILE)
    # ...but not the letterbox one, whose padding test reads where the padding is
    flow = BottomUp(_bottomup_codec(), ("h", "p"), 8)
    with pytest.raises(ContractError, match="record without input_h, input_w, top, bottom, left, right"):
        flow.preprocess([image], PROFILE)


def test_oracle_records_are_checked_too():
    codec = _bottomup_codec(encode_ground_truth=lambda annotations, height, width: (None, None, object(), 8))
    dataset = types.SimpleNamespace(image_info=lambda i: types.SimpleNamespace(height=4, width=6),
                                    annotations=lambda i: [])
    flow = BottomUp(codec, ("h", "p"), 8, capabilities=frozenset({"image"}))
    with pytest.raises(ContractError, match="object record, not a dataclass"):
        flow.oracle_outputs(dataset, [1])
