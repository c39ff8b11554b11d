"""Port-like files written from the suite's own pipeline, faithful or with one stage broken one known way.

The files are laid out as the model's PortLayout says and the seed's tools write them: the inputs folder
and side file of the preprocess script, an ais_bench timestamped output folder with ``sumary.json`` (or the
older tool's ``dumpOutput_device0`` with 1-based names), and a COCO results file. The tests audit them:
every broken port must fail at its stage with its KIND, the faithful one pass.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posegate.port.options import PortFiles

RUN = "2026_12_01-10_00_00"  # an ais_bench run folder name (%Y_%m_%d-%H_%M_%S)
BROKEN = {
    "inputs": ("channel-order", "normalisation", "interpolation", "padding", "scale", "layout", "dtype", "other"),
    "outputs": ("output-order", "wrong-output", "dtype", "precision", "other", "index-base"),
    "results": ("interpolation", "padding", "keypoint-offset", "keypoint-scale", "keypoint-order",
                "missing-persons", "score", "image-id", "other"),
}
FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]


def kinds(spec, stage: str) -> tuple[str, ...]:
    """The KINDs the zoo can break a model's port in at a stage: the generic ones that apply to its layout
    (an output order needs two outputs, a wrong output another network output of the same shape) and the
    known mistakes its layout declares."""
    layout = spec.port
    if stage == "results" and not layout.results:
        return ()
    declared = {v.kind for v in (layout.input_variants if stage == "inputs" else layout.result_variants)}
    shape = layout.input_shape or layout.input_shapes[0]
    image = len(shape) == 4 and shape[1] == 3
    own = {"inputs": ("interpolation", "padding", "scale"), "results": ("interpolation", "padding"),
           "outputs": ()}[stage]
    shapes = [d.shape for d in layout.outputs]
    out = []
    for kind in BROKEN[stage]:
        if kind in own and kind not in declared:
            continue
        if stage == "inputs" and kind in ("channel-order", "layout") and not image:
            continue
        if stage == "outputs" and kind == "output-order" and len(set(shapes)) < 2:
            continue
        if stage == "outputs" and kind == "wrong-output" and len(spec.output_names) <= len(layout.outputs):
            continue
        out.append(kind)
    return tuple(out)


def _variant(variants, kind):
    return next(v for v in variants if v.kind == kind)


def _break_input(kind, x, raw, layout, profile, rng):
    if kind == "channel-order":
        return x[::-1]
    if kind == "normalisation":
        return x * 2  # (img - 128) / 128 instead of / 256
    if kind == "layout":
        return np.ascontiguousarray(x.transpose(1, 2, 0)).reshape(x.shape)
    if kind == "other":
        return x + rng.normal(0, 0.05, x.shape).astype(np.float32)
    if kind in ("interpolation", "padding", "scale"):
        return np.asarray(_variant(layout.input_variants, kind).make(raw, profile), np.float32)
    return x


def _break_outputs(kind, outs, all_outs, rng):
    if kind == "wrong-output":
        # an earlier stage's maps of the same shape where the port writes the last ones
        return {n: next(all_outs[o] for o in all_outs if o != n and all_outs[o].shape == v.shape) for n, v in
                outs.items()}
    if kind == "precision":
        out = {}
        for n, v in outs.items():
            v = v.copy()
            flat = v.reshape(-1)
            spots = rng.choice(flat.size, max(1, flat.size // 200), replace=False)
            flat[spots] += 0.3 * float(np.abs(v).max() or 1.0)
            out[n] = v
        return out
    if kind == "other":
        return {n: rng.normal(0, float(np.abs(v).max() or 1.0), v.shape).astype(np.float32) for n, v in outs.items()}
    return outs


def _break_results(kind, people, rng):
    """One image's people broken one generic way (the layout's decoder variants are re-decoded instead)."""
    out = []
    for p in people:
        kp = np.asarray(p["keypoints"], float).reshape(17, 3)
        found = kp[:, 2] > 0
        score = p["score"]
        if kind == "keypoint-offset":
            kp[found, :2] -= 0.5  # upstream's +0.5 px to the pixel centre left out
        elif kind == "keypoint-scale":
            kp[found, :2] *= 1.25
        elif kind == "keypoint-order":
            for a, b in FLIP_PAIRS:
                kp[[a, b]] = kp[[b, a]]
        elif kind == "score":
            score = score / max(1, int(found.sum()))
        elif kind == "other":
            kp[found, :2] += rng.normal(0, 3, (int(found.sum()), 2))
        out.append({**p, "keypoints": kp.ravel().tolist(), "score": float(score)})
    if kind == "missing-persons" and out:
        out.remove(min(out, key=lambda p: p["score"]))
    return out


def save_tensor(path: Path, values: np.ndarray) -> None:
    """As the port's tools write: raw (``tofile``) or ``.npy`` (np.save, ais_bench --outfmt NPY)."""
    if path.suffix == ".npy":
        np.save(path, values, allow_pickle=False)
    else:
        values.tofile(path)


def _fp16(outs):
    # a device computing in fp16 hands back fp16-rounded values (written as float32, as seed 000's inference.py)
    return {n: v.astype(np.float16).astype(np.float32) for n, v in outs.items()}


def write_port(root: Path, spec, dataset, samples, session, broken: tuple[str, str] | None = None,
               trained_like: bool = False, seed: int = 0) -> PortFiles:
    """Write one port's files under ``root``; ``broken`` = (stage, KIND) breaks that stage that way;
    ``trained_like`` writes the layout's trained-like maps as device outputs (people to decode without
    trained weights), or the network's on the faithful inputs where it declares none. Returns the --port files of it."""
    layout, flow = spec.port, spec.flow
    profile = spec.profile(layout.profile)
    stage, kind = broken or (None, None)
    rng = np.random.default_rng(seed)
    folders = layout.folders("inputs")
    # a copy's folders beside the original's: prep-flip/, result-flip/
    preps = [root / k.replace("inputs", "prep") for k in folders]
    results_path = root / "results.json"
    side_path = root / layout.side.name if layout.side else None
    base = layout.index_base
    if (stage, kind) == ("outputs", "index-base"):
        base = 1 - layout.index_base
    # the tool that numbers outputs that way: the older benchmark tool from 1, ais_bench from 0
    out_dirs = [root / k.replace("inputs", "result") / ("dumpOutput_device0" if base else RUN) for k in folders]
    for d in preps + out_dirs:
        d.mkdir(parents=True)
    by_image, lines = {}, []
    for index, sample in enumerate(samples):
        raw = flow.load(dataset, sample)
        x, records = flow.preprocess([raw], profile)
        x, record, stem = (x[0] if x.shape[0] == 1 else x), records[0], layout.stem(dataset, sample, index)
        stacked: list[dict] = []
        for prep, out_dir, row in zip(preps, out_dirs, layout.file_rows(x)):
            team_x = _break_input(kind, row, raw, layout, profile, rng) if stage == "inputs" else row
            shape = layout.file_shape(row)
            save_tensor(prep / (stem + layout.input_suffix),
                  np.asarray(team_x, np.float16 if (stage, kind) == ("inputs", "dtype") else np.float32).reshape(shape))
            if trained_like and layout.trained_like is not None:
                every = layout.trained_like(dataset, sample, record)
            elif trained_like:  # none declared: the network on the faithful input (a memo shares it)
                every = session.run({spec.input_name: row.reshape(shape)})
            else:
                every = session.run({spec.input_name: np.asarray(team_x, np.float32).reshape(shape)})
            outs = {d.output: every[d.output] for d in layout.outputs}
            if layout.seed_precision == "fp16":
                outs = _fp16(outs)
            stacked.append(outs)
            written = _break_outputs(kind, outs, every, rng) if stage == "outputs" else outs
            order = list(layout.outputs)[::-1] if (stage, kind) == ("outputs", "output-order") else \
                list(layout.outputs)
            for k, d in enumerate(order):
                dtype = np.float16 if (stage, kind) == ("outputs", "dtype") else np.float32
                save_tensor(out_dir / layout.output_name(stem, k, base), written[d.output].astype(dtype))
        outs = stacked[0] if len(stacked) == 1 else {n: np.concatenate([o[n] for o in stacked]) for n in stacked[0]}
        if layout.side:
            lines.append((stem, record))
        if stage == "results" and kind in {v.kind for v in layout.result_variants}:
            people = _variant(layout.result_variants, kind).make(outs, record, sample)
        else:
            people = flow.decode(outs, [record], [sample])
        # results by image (a crop's image; a sequence is its own unit)
        image = int(sample["image_id"]) if isinstance(sample, dict) else \
            tuple(sample) if isinstance(sample, list) else int(sample)
        by_image.setdefault(image, []).extend(people)
    if stage == "results" and kind not in {v.kind for v in layout.result_variants}:
        by_image = {i: _break_results(kind, people, rng) for i, people in by_image.items()}
    if (stage, kind) == ("results", "image-id"):
        # keyed by file order, one off: each image's people under the next image's id
        ids = list(by_image)
        by_image = {ids[(n + 1) % len(ids)]: [{**p, "image_id": ids[(n + 1) % len(ids)]} for p in by_image[i]]
                    for n, i in enumerate(ids)}
    if side_path is not None:
        layout.side.write(side_path, lines)
    if layout.results:
        results_path.write_text(json.dumps(flow.finalize([p for people in by_image.values() for p in people])))
    if not base:
        for out_dir in out_dirs:
            (out_dir / "sumary.json").write_text(json.dumps({"NPU_compute_time": {"mean": 1.0}}))
    precision = layout.seed_precision if layout.seed_precision in spec.precisions else "fp32"
    paths = {**dict(zip(folders, preps)), **dict(zip(layout.folders("outputs"), (d.parent for d in out_dirs)))}
    if layout.results:
        paths["results"] = results_path
    if side_path is not None:
        paths["info"] = side_path
    return PortFiles(spec.name, paths, precision)
