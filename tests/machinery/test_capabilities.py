"""Capability names (a flow's ``capabilities``, a test's ``@pytest.mark.cases(kind, needs=...)``) are checked:
a typo is an error naming the test or the flow and the unknown name, never a selection of zero cases."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models import MODELS
from models.lightweight_openpose import codec as openpose_codec
from posegate.cases.generate import generate
from posegate.flows.kinds import CAPABILITIES, BottomUp, Flow

STAGE = "weights"
pytestmark = pytest.mark.stage
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("needs", sorted(CAPABILITIES))
def test_a_known_capability_selects_exactly_the_models_that_declare_it(needs):
    declaring = {s.name for s in MODELS.values() if needs in s.flow.capabilities}
    assert declaring, f"no registered model declares {needs!r}: the name is dead, or the table is wrong"
    assert {c.model for c in generate("model", MODELS.values(), needs=needs)} == declaring


def test_an_unknown_capability_in_needs_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"case kind 'shape' with needs='imgae': unknown capability 'imgae'; "
                                         r"known: crop, image, letterbox, sequence"):
        generate("shape", MODELS.values(), needs="imgae")


def test_an_unknown_capability_in_a_flow_is_an_error_where_it_is_declared():
    with pytest.raises(ValueError, match=r"BottomUp\(capabilities=...\): unknown capability 'letterbx'"):
        BottomUp(openpose_codec, decode_outputs=("stage2_heatmaps", "stage2_pafs"), stride=openpose_codec.STRIDE,
                 capabilities=frozenset({"image", "letterbx"}))
    with pytest.raises(ValueError, match=r"flow Pixels: unknown capability 'pixels'"):
        type("Pixels", (Flow,), {"capabilities": frozenset({"pixels"})})


TYPO = '''
import pytest

pytestmark = pytest.mark.stage


@pytest.mark.cases("shape", needs="imgae")
def test_padding_is_exactly_zero(case):
    pass
'''


def test_a_typo_in_a_tests_needs_stops_collection_naming_the_test(tmp_path):
    """The suite's own collection plugin, in a fresh process, on a test file with the typo."""
    (tmp_path / "test_typo.py").write_text(TYPO)
    # the outer run's worker identity and added options are not the inner run's
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "fixtures.options",
                           "-p", "fixtures.cases", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "test_typo.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert ("test_typo.py::test_padding_is_exactly_zero: @pytest.mark.cases: case kind 'shape' with needs='imgae': "
            "unknown capability 'imgae'") in out, out
