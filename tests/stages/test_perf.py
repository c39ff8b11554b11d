"""Stage 9, perf: throughput with pytest-benchmark, device-only and end to end, after warm-up.

Device-only times the engine call alone on a preprocessed batch; end to end times preprocess +
infer + decode from decoded BGR images in memory (file reading excluded). Both report samples/s in
extra_info. Timing assertions live here and nowhere else.
"""
from __future__ import annotations

import time
from functools import partial

import numpy as np
import pytest

from models.mspn_2xstg import codec as mspn_codec
from models.mspn_2xstg import golden as mspn_golden
from models.mspn_2xstg import recipe as mspn_recipe
from posegate.backends import BACKENDS, REFERENCE
from posegate.cases.target import Target
from posegate.gate.throughput import MIN_ROUNDS, expected, per_second, validity
from posegate.golden import decoders as golden
from posegate.metrics.parity import compare

STAGE = "perf"
pytestmark = pytest.mark.perf
MIN_TIME = 2.0  # seconds of timed work per benchmark, so a round is never a single noisy sample
MAX_ROUNDS = 50
DECODE_COST_BUDGET = 10.0  # seconds of timed inference after which test_decode_cost takes no further batch
WARMUP = 2  # untimed calls before the rounds: the first (allocations, compilation) and the probe that sizes rounds


def _rounds(seconds_per_call: float) -> int:
    return int(min(MAX_ROUNDS, max(MIN_ROUNDS, MIN_TIME / max(seconds_per_call, 1e-6))))


def _perf_input(spec, profile, pipeline, run_context, batch):
    b = pipeline.parity_batch(spec, profile, run_context.parity_dataset(spec.flow.dataset_kind), batch)
    if profile.dynamic:  # benchmark the dynamic profile at its declared concrete shape, real data where it fits
        x = np.zeros((b.x.shape[0], *profile.concrete_dims), np.float32)
        overlap = tuple(slice(0, min(a, c)) for a, c in zip(x.shape, b.x.shape))
        x[overlap] = b.x[overlap]
        return x, b.records
    return b.x, b.records


def _session(case, target, pipeline, needs):
    """A loaded engine whose outputs passed parity: a fast wrong engine is never benchmarked."""
    needs.stage("infer", model=case.model, backend=case.backend, precision=case.precision, shape=case.shape)
    return needs(pipeline.session, target)


def _check_parity(case, pipeline, session, feeds, dataset):
    """The engine's outputs on the very inputs it is timed on must match torch: a fast wrong engine fails."""
    if case.backend == REFERENCE:
        return
    spec = case.spec
    got = session.run(feeds)
    ref = pipeline.session(Target(spec, REFERENCE, "fp32")).run(feeds)
    bad = [f"{n}: {e.describe()}" for n in session.output_names
           if not (e := compare(got[n], ref[n], spec.tolerance(case.precision, n))).ok]
    if bad:
        pytest.fail(f"benchmark invalid: {case.backend}-{case.precision} outputs fail parity with torch on the timed "
                    "inputs: " + "; ".join(bad), pytrace=False)


def _time(benchmark, fn, samples, unit, scope, record, group, **extra):
    fn()  # first call outside the timer (lazy allocations, graph compilation)
    start = time.perf_counter()
    fn()
    one = time.perf_counter() - start
    rounds = _rounds(one)
    benchmark.group = group
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=0, iterations=1)
    stats = benchmark.stats.stats
    rate = samples / stats.mean
    spread = stats.stddev / stats.mean if stats.mean > 0 else 0.0
    invalid = validity(rounds, stats.total, spread)
    benchmark.extra_info.update({"samples_per_second": rate, "samples_per_round": samples, "unit": unit, "scope": scope,
                                 "warmup_rounds": WARMUP, "rounds": rounds, "total_seconds": stats.total,
                                 "spread": spread, "valid": not invalid, "invalid_because": invalid, **extra})
    record(throughput=rate, unit=f"{unit}/s", scope=scope, valid=not invalid, rounds=rounds, spread=spread)
    return rate


@pytest.mark.cases("perf")
def test_perf_device(case, target, benchmark, pipeline, run_context, needs, record):
    spec, profile = case.spec, case.profile
    session = _session(case, target, pipeline, needs)
    x, records = _perf_input(spec, profile, pipeline, run_context, case.batch)
    feeds = {spec.input_name: x}
    units = spec.flow.units(x, records)
    device = BACKENDS[case.backend].device()
    seed = expected(spec.expected_throughput, device, case.shape, case.batch)
    _check_parity(case, pipeline, session, feeds, run_context.parity_dataset(spec.flow.dataset_kind))
    # the scope names what the timer covered: the engine call alone, or a device session's bound run
    _time(benchmark, lambda: session.run(feeds), units, spec.flow.unit, f"device-only: {session.timing}", record,
          f"{case.model}-{case.shape}-device", input_shape=list(x.shape),
          execution=session.info.execution, device=device, expected=seed)
    if session.device_ms:  # the device's own compute timer, as the seeds measure (1000 x units / mean ms)
        timed = session.device_ms[-benchmark.extra_info["rounds"]:]  # the rounds only, not warm-up or parity calls
        rate = per_second(units, timed)
        benchmark.extra_info.update({"device_compute_per_second": rate, "device_calls": len(timed)})
        # a metric row, not a throughput: the gate's baseline holds the host-timed figure of this test
        record(metric=f"device compute {spec.flow.unit}/s", value=rate, device=device)
    if seed is not None:  # beside the measured figure, only when this is the seed's device
        record(metric=f"seed's {spec.flow.unit}/s on {device}", value=seed, device=device)


@pytest.mark.cases("perf")
def test_perf_end_to_end(case, target, benchmark, pipeline, run_context, needs, record):
    spec, profile = case.spec, case.profile
    session = _session(case, target, pipeline, needs)
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    samples = pipeline.parity_batch(spec, profile, dataset, case.batch).samples
    raws = [spec.flow.load(dataset, s) for s in samples]  # decoded in memory: file reading is not timed
    x, records = spec.flow.preprocess(raws, profile)
    _check_parity(case, pipeline, session, {spec.input_name: x}, dataset)

    def run():
        x, records = spec.flow.preprocess(raws, profile)
        return pipeline.decode(spec, session.run({spec.input_name: x}), records, samples)
    _time(benchmark, run, spec.flow.units(x, records), spec.flow.unit, "end-to-end", record,
          f"{case.model}-{case.shape}-e2e", dataset=dataset.name)


@pytest.mark.cases("decode_cost")
def test_decode_cost(case, benchmark, pipeline, run_context, needs, record):
    """Decoding must not dominate: a batch costs less to decode than the baseline backend's inference of it
    (--baseline-backend, ONNX Runtime by default: the case's backend)."""
    spec, profile = case.spec, case.profile
    # no engine shape: the baseline runs whole batches and the last, shorter one alike
    session = needs(pipeline.session, Target(spec, case.backend, case.precision))
    flow = spec.flow
    # random weights give noise maps with hundreds of peaks per channel: the decoder oracle's maps of the
    # same images (their real people) stand in for trained outputs where the flow has an oracle
    stand_in = flow.decode_needs_trained_weights and pipeline.weights_info(spec).synthetic
    if stand_in and not (flow.has_oracle and case.batch == 1):
        pytest.skip(f"decode cost is measured on trained outputs; supply {spec.checkpoint.filename} in --weights-dir "
                    "(random weights give noise maps with hundreds of peaks per channel)")
    dataset = run_context.parity_dataset(spec.flow.dataset_kind)
    every = pipeline.samples(spec, profile, dataset)
    batches = [every[i:i + case.batch] for i in range(0, min(len(every), 4 * case.batch), case.batch)]
    ratios, decodes, infers, spent = [], [], [], 0.0
    for samples in batches:
        if spent >= DECODE_COST_BUDGET:  # enough timed inference: a big batch of a big network is one sample
            break
        b = next(pipeline.batches(spec, profile, dataset, len(samples), samples))
        outputs = session.run({spec.input_name: b.x})
        repeats = 3 if session.last_seconds < 1.0 else 1  # a call of a second or more is its own average
        infer = min(_timed(lambda x=b.x: session.run({spec.input_name: x}), session) for _ in range(repeats))
        spent += infer * repeats
        if stand_in:
            maps, records, stride = flow.oracle_outputs(dataset, list(b.samples))
            decode_fn = partial(flow.decode, maps, records, list(b.samples), stride)
        else:
            decode_fn = partial(pipeline.decode, spec, outputs, b.records, b.samples)
        decode = min(_timed(decode_fn) for _ in range(3))
        ratios.append(decode / infer)
        decodes.append(decode)
        infers.append(infer)
    benchmark.group = f"{case.model}-{case.shape}-decode"
    benchmark.pedantic(decode_fn, rounds=10, warmup_rounds=1)
    worst = max(ratios)
    benchmark.extra_info.update({"decode_over_infer": ratios, "worst_ratio": worst, "dataset": dataset.name,
                                 "decode_seconds": decodes, f"{case.backend}_infer_seconds": infers,
                                 "batch": case.batch, "weights": pipeline.weights_identity(spec),
                                 "decoded": "decoder-oracle maps" if stand_in else "network outputs"})
    record(metric="decode/infer time", value=worst, threshold=1.0, direction="max", margin=1.0 - worst,
           dataset=dataset.name)
    # the two times themselves, per batch of case.batch (the medians over the batches timed)
    record(metric=f"decode ms per batch of {case.batch}", value=1e3 * float(np.median(decodes)), dataset=dataset.name)
    record(metric=f"{case.backend} infer ms per batch of {case.batch}", value=1e3 * float(np.median(infers)),
           dataset=dataset.name)
    assert worst < 1.0, f"decoding costs {worst:.2f}x the {case.backend} inference on {dataset.name}"


def _timed(fn, session=None) -> float:
    start = time.perf_counter()
    fn()
    return session.last_seconds if session is not None else time.perf_counter() - start


@pytest.mark.parametrize("flip", [False, True], ids=["no-flip", "flip"])
def test_mspn_decode_beats_upstreams_steps(flip, benchmark, run_context, record):
    """MSPN decoding of 64 crops costs less than upstream's own steps (recipe.py: test.py one crop and
    one joint at a time, one cv2.GaussianBlur per map), timed interleaved on this machine's inputs: the
    golden decoder cases' network outputs where the reference dir has them, else noisy Gaussians."""
    crops = 64
    path = run_context.reference_file(*golden.FOLDER, mspn_golden.DECODERS.file)
    if path is not None:
        data = golden.open_cases(path)
        maps = np.concatenate([data[f"{c}/heatmaps"] for c in mspn_golden.DECODERS.cases])
        mirrored = np.concatenate([data[f"{c}/heatmaps_flipped"] for c in mspn_golden.DECODERS.cases])
        records = [r for c in mspn_golden.DECODERS.cases for r in mspn_golden.records(data, c, mspn_codec)]
        take = np.arange(crops) % len(maps)
        maps, mirrored, records = maps[take], mirrored[take], [records[i] for i in take]
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:mspn_codec.HEATMAP_H, 0:mspn_codec.HEATMAP_W]
        cx, cy = rng.uniform(0, 48, (2, 2, crops, 17, 1, 1))
        maps, mirrored = (255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8)
                          + rng.normal(size=(2, crops, 17, 64, 48)) * 5).astype(np.float32)
        center, scale = mspn_codec.boxes_to_center_scale(rng.uniform(20, 200, (crops, 4)))
        records = [mspn_codec.CropRecord(i, 640, 480, tuple(c), tuple(s), 0.9)
                   for i, (c, s) in enumerate(zip(center, scale))]
    records = [mspn_codec.CropRecord(r.image_id, r.orig_w, r.orig_h, r.center, r.scale, r.det_score, flip)
               for r in records]
    outputs = np.concatenate([maps, mirrored]) if flip else maps
    ours = partial(mspn_codec.decode_crops, outputs, records)
    theirs = partial(mspn_recipe.decode_crops, outputs, records)
    assert ours() == theirs()  # a fast decoder that is wrong is no win
    times = {"suite": [], "upstream": []}
    for _ in range(7):  # interleaved: both see the same load
        times["suite"].append(_timed(ours))
        times["upstream"].append(_timed(theirs))
    suite, upstream = min(times["suite"]), min(times["upstream"])
    benchmark.group = f"mspn_2xstg-decode-{crops}-crops"
    benchmark.pedantic(ours, rounds=10, warmup_rounds=1)
    benchmark.extra_info.update({"suite_seconds": suite, "upstream_seconds": upstream, "crops": crops, "flip": flip,
                                 "inputs": "golden decoder cases" if path else "noisy Gaussians"})
    record(metric=f"decode ms of {crops} crops", value=1e3 * suite)
    record(metric=f"upstream's steps ms of {crops} crops", value=1e3 * upstream)
    assert suite < upstream, (f"decoding {crops} crops takes {suite * 1e3:.1f} ms, upstream's steps "
                              f"{upstream * 1e3:.1f} ms")
