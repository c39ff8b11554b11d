"""The isolation guard (fixtures/isolation.py) on deliberately leaking tests: each leak fails the test that made
it, is put back before the next test, and the faithful ways (monkeypatch, a restoring fixture) pass."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

STAGE = "weights"
pytestmark = pytest.mark.stage

GUARDED = ("-p", "fixtures.isolation", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist")
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def guarded(pytester, monkeypatch):
    """Runs pytest on the files made in ``pytester`` in a fresh process, under the guard. A fresh process, not
    pytester's in-process run: that one drops the modules its run imported from sys.modules after it, and torch's
    operator libraries (torch.distributed, inductor) then register twice on their next import."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])))
    return lambda *args: pytester.runpytest_subprocess(*GUARDED, *args)

LEAKING = """
import os, sys, types
import torch

def test_threads_leak():
    torch.set_num_threads(1 if torch.get_num_threads() != 1 else 2)

def test_tensorrt_stand_in_leaks():
    sys.modules["tensorrt"] = types.ModuleType("tensorrt")

def test_object_stand_in_leaks():
    sys.modules["torch_aie"] = object()

def test_replaced_module_leaks():
    sys.modules["json"] = types.ModuleType("json")

def test_environment_leaks():
    os.environ["POSEGATE_LEAK"] = "1"

def test_default_dtype_leaks():
    torch.set_default_dtype(torch.float64)

def test_deterministic_algorithms_leak():
    torch.use_deterministic_algorithms(True)
"""

FAITHFUL = """
import json, os, sys, types
import pytest
import torch

THREADS = torch.get_num_threads()

@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)

def test_stand_in_through_monkeypatch(monkeypatch, two_threads):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setenv("POSEGATE_LEAK", "1")
    monkeypatch.chdir("/")

def test_a_real_import_is_no_leak():
    import xml.dom.minidom  # noqa: F401

def test_after_them_all_is_as_before():
    assert "tensorrt" not in sys.modules and "torch_aie" not in sys.modules
    assert isinstance(json.dumps, types.FunctionType) and "POSEGATE_LEAK" not in os.environ
    assert torch.get_num_threads() == THREADS and torch.get_default_dtype() == torch.float32
    assert not torch.are_deterministic_algorithms_enabled()
"""


def test_the_guard_fails_each_leaking_test_and_puts_the_state_back(pytester, guarded):
    pytester.makepyfile(test_a_leaking=LEAKING, test_b_faithful=FAITHFUL)
    result = guarded()
    result.assert_outcomes(passed=10, errors=7)
    # one line per leaking test, naming it and what it left: reported once, by the test that made it
    lines = {ln.split(" ")[0]: ln for ln in result.outlines
             if ln.startswith("test_a_leaking.py::") and " left global state behind " in ln}
    expected = {
        "test_threads_leak": "torch.get_num_threads() changed from ",
        "test_tensorrt_stand_in_leaks":
            "sys.modules['tensorrt'] = <module 'tensorrt'>: a stand-in (tensorrt is not on sys.path)",
        "test_object_stand_in_leaks": "sys.modules['torch_aie'] = <object object at ",
        "test_replaced_module_leaks": "sys.modules['json'] replaced by <module 'json'>",
        "test_environment_leaks": "os.environ['POSEGATE_LEAK'] set to '1'",
        "test_default_dtype_leaks": "torch.get_default_dtype() changed from torch.float32 to torch.float64",
        "test_deterministic_algorithms_leak":
            "torch deterministic algorithms (enabled, warn_only) changed from (False, False) to (True, False)",
    }
    assert set(lines) == {f"test_a_leaking.py::{name}" for name in expected}
    for name, leak in expected.items():
        assert leak in lines[f"test_a_leaking.py::{name}"]


def test_each_test_draws_torch_numbers_from_its_own_seed_alone_or_after_others(pytester, guarded):
    pytester.makepyfile(test_draws="""
        import torch

        def test_seeds_and_draws():
            torch.manual_seed(5)
            torch.rand(100)

        def test_draw(request):
            from fixtures.isolation import node_seed
            own = torch.Generator().manual_seed(node_seed(request.node.nodeid))
            assert torch.equal(torch.rand(3), torch.rand(3, generator=own))
    """)
    guarded().assert_outcomes(passed=2)
    guarded("-k", "not seeds").assert_outcomes(passed=1, deselected=1)
