"""Case kinds as a registry (posegate/case_kinds.py): every kind a test asks for has a generator, an unknown
kind is an error naming the known ones, and the baseline backend is a parameter, not a name in the code."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from models import MODELS
from posegate.backends import BACKENDS
from posegate.cases import kinds as case_kinds
from posegate.cases.generate import Case, generate
from posegate.cases.kinds import KINDS, case_kind

STAGE = "weights"
pytestmark = pytest.mark.stage

ROOT = Path(__file__).resolve().parents[2]


def _asked_kinds() -> dict[str, str]:
    """kind -> a file whose test asks for it with @pytest.mark.cases(kind, ...), over tests/ and models/."""
    asked = {}
    for path in sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("models/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cases"
                    and ast.unparse(node.func.value) == "pytest.mark"):
                assert node.args and isinstance(node.args[0], ast.Constant), \
                    f"{path}: @pytest.mark.cases needs a literal kind, got {ast.unparse(node)}"
                asked.setdefault(node.args[0].value, str(path.relative_to(ROOT)))
    return asked


def test_every_kind_a_test_asks_for_is_registered():
    asked = _asked_kinds()
    assert len(asked) >= 10, f"the scan found only {sorted(asked)}: it no longer sees the markers"
    missing = {k: f for k, f in asked.items() if k not in KINDS}
    assert not missing, f"kinds without a generator in posegate/case_kinds.py: {missing}"


def test_no_registered_kind_is_dead():
    unused = sorted(set(KINDS) - set(_asked_kinds()))
    assert not unused, f"registered case kinds no test asks for: {unused}"


def test_an_unknown_kind_is_an_error_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown case kind 'infr'; known kinds: .*\binfer\b"):
        generate("infr", MODELS.values())
    with pytest.raises(ValueError, match="unknown case kind"):
        generate("infr", [])  # even with no model to generate for: a typo never passes silently


def test_a_kind_registers_once(monkeypatch):
    monkeypatch.setattr(case_kinds, "KINDS", dict(KINDS))

    @case_kind("fresh")
    def fresh(scope):
        yield Case(scope.spec.name, variant="fresh")

    assert case_kinds.KINDS["fresh"] is fresh
    with pytest.raises(ValueError, match="'infer' is registered twice"):
        case_kind("infer")(fresh)


def test_shards_and_decode_cost_run_on_the_baseline_backend_given():
    other = next(n for n, b in BACKENDS.items() if n != "onnxruntime" and "fp32" in b.precisions)
    datasets = {"coco-keypoints": [("synthetic", True)], "h36m": [("synthetic", True)]}
    for kind in ("shards", "decode_cost"):
        default = generate(kind, MODELS.values(), datasets)
        moved = generate(kind, MODELS.values(), datasets, baseline=other)
        assert default and {c.backend for c in default} == {"onnxruntime"}
        assert {c.backend for c in moved} == {other}
        assert [c.id.replace(f"-{other}-", "-onnxruntime-") for c in moved] == [c.id for c in default]


def test_each_generator_yields_only_its_models_cases():
    datasets = {"coco-keypoints": [("synthetic", True)], "h36m": [("synthetic", True)]}
    for kind in KINDS:
        for spec in MODELS.values():
            assert all(c.model == spec.name for c in generate(kind, [spec], datasets)), kind
