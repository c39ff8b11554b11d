"""The device-library stand-ins (tests/standins.py) as fixtures: each installed for one test, undone after it."""
from __future__ import annotations

import pytest

from tests import standins


@pytest.fixture
def fake_atc(tmp_path, monkeypatch):
    return standins.install_atc(tmp_path, monkeypatch)


@pytest.fixture
def ais(monkeypatch):
    """ais_bench importable as the stand-in, a fresh process, and the ACL release hook not at exit."""
    yield standins.install_ais_bench(monkeypatch)
    standins.FakeInferSession.style = "later"


@pytest.fixture
def aie(monkeypatch):
    return standins.install_torch_aie(monkeypatch)
