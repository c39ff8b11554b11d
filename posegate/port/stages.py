"""The stage audits of a team's port: its inputs, device outputs and results, file by file, streamed.

One ``Audit`` per model and run: it reads the team's files one at a time against the suite's own
preprocessing, the torch reference (on the team's inputs) and the reference decoder, and keeps only small
things between stages (findings, decoded people), which the accuracy stage reuses.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from posegate.metrics import parity
from posegate.port.explain import (
    Explained,
    exact,
    explain_input,
    explain_results,
    input_tolerance,
    match_people,
)
from posegate.port.layout import SideFileError
from posegate.port.readers import FileProblem, OtherShape, output_folder, read_tensor, stored_shape


@dataclass
class Finding:
    file: str
    before: float | None
    explained: Explained


@dataclass
class StageReport:
    stage: str
    checked: int = 0
    findings: list = field(default_factory=list)  # files beyond tolerance, each with its explanation
    problems: list = field(default_factory=list)  # files that could not be compared (hostile input)
    notes: list = field(default_factory=list)
    tolerance: float | None = None
    details: dict = field(default_factory=dict)
    unit: str = "files"

    @property
    def ok(self) -> bool:
        return not self.findings and not self.problems

    @property
    def kind(self) -> str | None:
        if not self.findings:
            return None
        return Counter(f.explained.kind for f in self.findings).most_common(1)[0][0]

    def worst(self, n: int = 3) -> list[Finding]:
        key = lambda f: float("inf") if f.before is None else f.before  # noqa: E731
        return sorted(self.findings, key=key, reverse=True)[:n]

    def message(self, trap: str | None = None) -> str:
        if self.problems:
            more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
            return f"{self.stage} unusable: " + "; ".join(self.problems[:3]) + more
        if not self.findings:
            return f"{self.stage} agree: {self.checked} {self.unit} checked" + (
                f" within {self.tolerance:.3g}" if self.tolerance else "")
        kind = self.kind
        mine = [f for f in self.findings if f.explained.kind == kind]
        w = max(mine, key=lambda f: -1 if f.before is None else f.before)
        before = "" if w.before is None else f" error {w.before:.3g}"
        after = "" if w.explained.after is None else f", {w.explained.after:.3g} after"
        tol = f", tolerance {self.tolerance:.3g}" if self.tolerance else ""
        text = (f"{self.stage} differ: {kind}: {len(self.findings)} of {self.checked} {self.unit} differ "
                f"(worst {w.file}{before}{tol}); {w.explained.label}{after}")
        return text + (f". {trap}" if trap else "")

    def as_result(self, trap: str | None = None) -> dict:
        return {"port": {"stage": self.stage, "ok": self.ok, "kind": self.kind, "checked": self.checked,
                         "summary": self.message(trap), "problems": self.problems[:20], "notes": self.notes,
                         "tolerance": self.tolerance, "details": self.details,
                         "worst": [{"file": f.file, "before": f.before, "kind": f.explained.kind,
                                    "label": f.explained.label, "after": f.explained.after}
                                   for f in self.worst(5)]}}


class Audit:
    """The audit of one model's port files (``files``: posegate.port.options.PortFiles) on ``dataset``.

    ``session`` runs the torch reference (``run({input_name: x})``); ``samples`` are the flow's samples of
    the dataset, the units the port writes one input file for."""

    def __init__(self, spec, dataset, samples, files, session):
        self.spec, self.dataset, self.samples, self.files, self.session = spec, dataset, list(samples), files, session
        self.layout = spec.port
        self.profile = spec.profile(self.layout.profile)
        self.flow = spec.flow
        self.decoded: dict[str, list] = {}  # "inputs" / "outputs" -> results decoded with the reference decoder

    # ---- shared -----------------------------------------------------------------------------------
    def stems(self) -> dict[str, object]:
        return {self.layout.stem(self.dataset, s, i): s for i, s in enumerate(self.samples)}

    def reference_input(self, sample):
        raw = self.flow.load(self.dataset, sample)
        x, records = self.flow.preprocess([raw], self.profile)
        # one sample's engine input: its rows (a sequence and its mirror) or its one image without the batch axis
        return raw, (x[0] if x.shape[0] == 1 else x), records[0]

    def side_records(self, report: StageReport) -> dict | None:
        path = self.files.get("info")
        if path is None:
            return None
        try:
            return dict(self.layout.side.read(path))
        except SideFileError as e:
            report.problems.append(str(e))
            return {}

    def team_input(self, stem: str, kind: str = "inputs", shape=None) -> np.ndarray:
        path = self.files.get(kind) / (stem + self.layout.input_suffix)
        if not path.is_file():
            raise FileProblem(f"{path.name}: missing from {path.parent}")
        return read_tensor(path, shape or self.layout.input_shape, self.layout.input_shapes).values

    def file_inputs(self, stem, sample) -> list[np.ndarray]:
        """What the device ran on for one sample, one array per input folder (the team's files where given)."""
        layout = self.layout
        if self.files.get("inputs") is None:
            return [r.reshape(layout.file_shape(r)) for r in layout.file_rows(self.reference_input(sample)[1])]
        n = len(layout.folders("inputs"))
        # fixed shapes need no preprocessing; bucketed ones are the reference input's
        shapes = [layout.input_shape] * n if not layout.input_shapes else self._file_shapes(stem, sample, None)[1]
        return [self.team_input(stem, kind, shape) for kind, shape in zip(layout.folders("inputs"), shapes)]

    def _file_shapes(self, stem, sample, side):
        """(record, shape of each input folder's file) of one sample; fixed shapes need no preprocessing."""
        layout = self.layout
        if not layout.input_shapes and side is not None and stem in side:
            return side[stem], [layout.input_shape] * len(layout.folders("inputs"))
        _, ref, record = self.reference_input(sample)
        record = side[stem] if side is not None and stem in side else record
        return record, [layout.file_shape(r) for r in layout.file_rows(ref)]

    def output_folders(self, report: StageReport, expected) -> list:
        folders = []
        for kind in self.layout.folders("outputs"):
            folder = output_folder(self.files.get(kind))
            extra = sorted(set(folder.files) - set(expected))
            if extra:
                report.problems.append(f"{folder.path.name}/: {len(extra)} output files for no input of "
                                       f"{self.dataset.identity}: {', '.join(extra[:3])}")
            folders.append(folder)
        return folders

    def _maps(self, folders, stem, shapes) -> dict:
        """The team's output files of one input by spec output name, the copies' folders stacked on the first
        axis as the reference's engine batch holds them (FileProblem naming the file)."""
        maps: dict[str, list] = {}
        for folder, shape in zip(folders, shapes):
            base = folder.base if folder.base is not None else self.layout.index_base
            found = folder.files.get(stem, {})
            for k, decl in enumerate(self.layout.outputs):
                path = found.get(base + k)
                if path is None:
                    raise FileProblem(f"{self.layout.output_name(stem, k, base)}: missing from {folder.path}")
                maps.setdefault(decl.output, []).append(read_tensor(path, decl.shape_for(shape)).values)
        return {n: v[0] if len(v) == 1 else np.concatenate(v) for n, v in maps.items()}

    @staticmethod
    def _image_id(sample) -> int:
        return int(sample["image_id"]) if isinstance(sample, dict) else int(sample)

    def _records(self, stem, sample, side):
        if side is not None and stem in side:
            return side[stem]
        return self.reference_input(sample)[2]

    # ---- inputs -----------------------------------------------------------------------------------
    def inputs(self) -> StageReport:
        report = StageReport("inputs")
        layout = self.layout
        folders = [self.files.get(k) for k in layout.folders("inputs")]
        expected = self.stems()
        present = set(expected)
        for folder in folders:
            here = {p.stem for p in folder.iterdir() if p.is_file() and p.suffix == layout.input_suffix}
            missing, extra = [s for s in expected if s not in here], sorted(here - set(expected))
            if missing:
                report.problems.append(f"{folder.name}/: {len(missing)} input files missing: "
                                       + ", ".join(s + layout.input_suffix for s in missing[:3]))
            if extra:
                report.problems.append(f"{folder.name}/: {len(extra)} files for no {self.flow.unit[:-1] or 'sample'} "
                                       f"of {self.dataset.identity}: "
                                       + ", ".join(s + layout.input_suffix for s in extra[:3]))
            present &= here
        side = self.side_records(report)
        if side is not None:
            name = self.files.get("info").name
            lacking = [s for s in expected if s in present and s not in side]
            if lacking:
                report.problems.append(f"{name}: no entry for {len(lacking)} inputs: {', '.join(lacking[:3])}")
            strays = sorted(set(side) - set(expected))
            if strays:
                report.problems.append(f"{name}: entries for {len(strays)} files that are not inputs: "
                                       f"{', '.join(strays[:3])}")
        first, worst_tol = None, 0.0
        for stem, sample in expected.items():
            if stem not in present:
                continue
            raw, whole, record = self.reference_input(sample)
            if side is not None and stem in side:
                problem = layout.side.problem(side[stem], record)
                if problem:
                    report.problems.append(f"{self.files.get('info').name}: {stem}: {problem}")
            for folder, ref in zip(folders, layout.file_rows(whole)):
                file = stem + layout.input_suffix if not layout.copies else f"{folder.name}/{stem}{layout.input_suffix}"
                try:
                    t = read_tensor(folder / (stem + layout.input_suffix), layout.file_shape(ref), layout.input_shapes)
                except OtherShape as e:
                    report.checked += 1
                    report.findings.append(Finding(file, None, Explained(
                        "scale", f"sized {'x'.join(map(str, e.found[-2:]))} where the port snaps this image to "
                                 f"{'x'.join(map(str, ref.shape[-2:]))} (another of the declared shapes)", None)))
                    continue
                except FileProblem as e:
                    report.problems.append(str(e))
                    continue
                report.checked += 1
                team = t.values.reshape(ref.shape)
                tol = input_tolerance(ref)
                worst_tol = max(worst_tol, tol)
                before = float(np.max(np.abs(team - ref)))
                if t.dtype != layout.input_dtype:
                    report.findings.append(Finding(file, before, Explained(
                        "dtype", f"the file holds {t.dtype} (told by its size); the port writes and reads "
                                 f"{layout.input_dtype}", before)))
                elif before > tol:
                    e = explain_input(team, ref, tol, raw, self.profile, layout, record, first)
                    first = e.kind if e.kind != "other" else first
                    report.findings.append(Finding(file, before, e))
        report.tolerance = worst_tol or None
        return report

    # ---- outputs ----------------------------------------------------------------------------------
    def outputs(self) -> StageReport:
        report = StageReport("outputs")
        layout, spec = self.layout, self.spec
        expected = self.stems()
        try:
            folders = self.output_folders(report, expected)
        except FileProblem as e:
            report.problems.append(str(e))
            return report
        for folder in folders:
            if folder.base is not None and folder.base != layout.index_base:
                report.findings.append(Finding(folder.path.name, None, Explained(
                    "other", f"index-base mistake: the files are numbered from {folder.base} ({folder.tool} names) but "
                             f"the port's postprocess reads {layout.output_name('<stem>', 0, layout.index_base)} first"
                             + (f". {layout.traps['index-base']}" if "index-base" in layout.traps else ""), None)))
        if self.files.get("inputs") is None:
            report.notes.append("no --port inputs: the reference ran on the suite's own preprocessing")
        tol = {d.output: spec.tolerance(self.files.precision, d.output) for d in layout.outputs}
        side = self.side_records(StageReport("info"))
        decoded = []
        for stem, sample in expected.items():
            try:
                xs = self.file_inputs(stem, sample)
            except FileProblem as e:
                report.problems.append(f"cannot run the reference on the team's input: {e}")
                continue
            refs = []
            # one device run per input folder (a copy's file runs apart from its original, as the port runs it)
            for x, folder in zip(xs, folders):
                ref = self.session.run({spec.input_name: x})
                refs.append(ref)
                base = folder.base if folder.base is not None else layout.index_base
                report.checked += len(layout.outputs)
                for k, decl in enumerate(layout.outputs):
                    self._check_output(report, folder, stem, k, base, decl, ref, tol, x.shape)
            decoded += self.flow.decode(self._stacked(refs), [self._records(stem, sample, side)], [sample])
        self.decoded["inputs"] = decoded
        report.tolerance = max((t.max_rel for t in tol.values() if t.max_rel), default=None)
        return report

    @staticmethod
    def _stacked(refs: list) -> dict:
        """The copies' outputs of one sample on the first axis, as one engine batch would give them."""
        return refs[0] if len(refs) == 1 else {n: np.concatenate([r[n] for r in refs]) for n in refs[0]}

    def _check_output(self, report, folder, stem, k, base, decl, ref, tol, input_shape):
        layout = self.layout
        path = folder.files.get(stem, {}).get(base + k)
        name = layout.output_name(stem, k, base)
        if path is None:
            report.problems.append(f"{name}: missing from {folder.path}")
            return
        try:
            t = read_tensor(path, decl.shape_for(input_shape))
        except FileProblem as e:
            other = self._sized_as_other(path, k, input_shape)
            if other is None:
                report.problems.append(str(e))
            else:
                at = [d.output for d in layout.outputs].index(other) + base
                report.findings.append(Finding(path.name, None, Explained(
                    "output-order", f"{path.name} has the size of {other} (output {at}); the outputs are written "
                    "in another order than the port's postprocess reads", None)))
            return
        err = parity.compare(t.values, ref[decl.output], tol[decl.output])
        if t.dtype not in layout.output_dtypes:
            report.findings.append(Finding(path.name, err.max_rel, Explained(
                "dtype", f"{path.name} holds {t.dtype} (told by its size); the port's postprocess reads "
                         f"{'/'.join(layout.output_dtypes)}", None)))
        elif not err.ok:
            report.findings.append(Finding(path.name, err.max_rel, self._explain_output(t.values, decl, ref, tol)))

    def _sized_as_other(self, path: Path, k: int, input_shape) -> str | None:
        size, stored = path.stat().st_size, stored_shape(path)
        for j, d in enumerate(self.layout.outputs):
            shape = d.shape_for(input_shape)
            if j != k and (stored == shape if stored is not None else
                           size in (int(np.prod(shape)) * 4, int(np.prod(shape)) * 2)):
                return d.output
        return None

    def _explain_output(self, values, decl, ref, tol) -> Explained:
        declared = [d.output for d in self.layout.outputs]
        for name, other in ref.items():
            if name == decl.output or other.shape != values.shape:
                continue
            e = parity.compare(values, other, tol.get(name, tol[decl.output]))
            if e.ok:
                if name in declared:
                    return Explained("output-order", f"it holds {name}, which the port writes at another index",
                                     e.max_rel)
                return Explained("wrong-output", f"it holds {name}, another output of the network, not "
                                                 f"{decl.output}", e.max_rel)
        e = parity.compare(values, ref[decl.output], tol[decl.output])
        if e.cosine >= 0.99:
            looser = [p for p in self.spec.precisions
                      if parity.compare(values, ref[decl.output], self.spec.tolerance(p, decl.output)).ok]
            hint = (f"; within the {looser[0]} tolerance: if the device ran in {looser[0]}, say "
                    f"--port={self.spec.name}:outputs:{looser[0]}=DIR" if looser else "")
            return Explained("precision", f"{decl.output} itself (cosine {e.cosine:.5f}) with errors beyond the "
                                          f"{self.files.precision} tolerance{hint}", None)
        return Explained("other", f"not {decl.output} nor any other output of the network (cosine {e.cosine:.3f})",
                         None)

    def decode_on_team_inputs(self) -> list:
        """The reference network and decoder on the team's inputs (their preprocessing swapped in)."""
        report = StageReport("inputs")
        side = self.side_records(report)
        decoded = []
        for stem, sample in self.stems().items():
            try:
                xs = self.file_inputs(stem, sample)
            except FileProblem:
                continue
            ref = self._stacked([self.session.run({self.spec.input_name: x}) for x in xs])
            decoded += self.flow.decode(ref, [self._records(stem, sample, side)], [sample])
        self.decoded["inputs"] = decoded
        return decoded

    def decode_team_outputs(self) -> list:
        """The team's device outputs through the reference decoder (their device swapped in too)."""
        report = StageReport("results")
        side = self.side_records(report)
        folders = [output_folder(self.files.get(k)) for k in self.layout.folders("outputs")]
        decoded = []
        for stem, sample in self.stems().items():
            record, shapes = self._file_shapes(stem, sample, side)
            try:
                maps = self._maps(folders, stem, shapes)
            except FileProblem:
                continue
            decoded += self.flow.decode(maps, [record], [sample])
        self.decoded["outputs"] = decoded
        return decoded

    # ---- results ----------------------------------------------------------------------------------
    def team_results(self, report: StageReport) -> dict | None:
        path = self.files.get("results")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            report.problems.append(f"{path.name}: not a JSON results file ({e})")
            return None
        if not isinstance(data, list) or not all(
                isinstance(r, dict) and {"image_id", "keypoints", "score"} <= set(r)
                and isinstance(r["keypoints"], list) and len(r["keypoints"]) == 51 for r in data):
            report.problems.append(f"{path.name}: not a COCO keypoint results list (image_id, keypoints of 51 "
                                   "numbers, score per entry)")
            return None
        by_image: dict[int, list] = {}
        for r in data:
            by_image.setdefault(int(r["image_id"]), []).append(r)
        known = {int(i) for i in self.dataset.image_ids}
        foreign = sorted(set(by_image) - known)
        if foreign:
            report.problems.append(f"{path.name}: results for {len(foreign)} images not in {self.dataset.identity}: "
                                   f"ids {foreign[:5]}")
        return by_image

    def results(self) -> StageReport:
        report = StageReport("results", unit="images")
        team = self.team_results(report)
        if team is None:
            return report
        if self.files.get("outputs") is None:
            report.notes.append("no --port outputs: the team's results were not re-decoded")
            return report
        expected = self.stems()
        try:
            folders = [output_folder(self.files.get(k)) for k in self.layout.folders("outputs")]
        except FileProblem as e:
            report.problems.append(str(e))
            return report
        side = self.side_records(report)
        ref_by_image, decoded, items = {}, [], {}
        for stem, sample in expected.items():
            record, shapes = self._file_shapes(stem, sample, side)
            try:
                outs = self._maps(folders, stem, shapes)
            except FileProblem as e:
                report.problems.append(str(e))
                continue
            ref = self.flow.decode(outs, [record], [sample])
            decoded += ref
            image = self._image_id(sample)
            ref_by_image.setdefault(image, []).extend(ref)
            items.setdefault(image, []).append((outs, record, sample))
            report.checked += 1
        self.decoded["outputs"] = decoded
        failing = {i: match_people(team.get(i, []), r)[0] for i, r in ref_by_image.items()
                   if not exact(team.get(i, []), r)}
        if failing:
            variants = {}
            for v in self.layout.result_variants:
                done = {i for i in failing
                        if exact(team.get(i, []), [p for it in items[i] for p in v.make(*it)])}
                variants[v.kind] = (v.label, done)
            e = explain_results(failing, team, ref_by_image, variants)
            for i in failing:
                report.findings.append(Finding(f"image {i}", None, e))
            report.details["explained"] = e.label
        report.tolerance = None
        return report


def audit_dataset(context, spec, files):
    """The dataset a port's files were made from: of the run's datasets with inputs, the one whose samples
    name the most of the team's input (or output) files; the parity dataset when none names any."""
    kind = spec.flow.dataset_kind
    folder = files.get("inputs")
    names = {p.stem for p in folder.iterdir()} if folder is not None else set()
    best, hits = None, 0
    for name in list(context.datasets.get(kind, {})):
        dataset = context.dataset(kind, name)
        if not dataset.has_inputs:
            continue
        profile = spec.profile(spec.port.profile)
        samples = spec.flow.samples(dataset, profile, context.options)
        n = sum(spec.port.stem(dataset, s, i) in names for i, s in enumerate(samples))
        if n > hits:
            best, hits = dataset, n
    return best or context.parity_dataset(kind)
