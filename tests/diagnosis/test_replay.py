"""`pytest --replay=DIR`: a bundle --reduce wrote, rebuilt and run on its backend from the folder alone.

It fails while the reduced failure reproduces (saying whether it is the same failure the bundle recorded)
and passes once the backend gets the subgraph right; a backend this machine lacks skips, naming it.
Without --replay there is nothing to replay, and the test says so.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from posegate.diagnosis.reduce import CannotReduce, replay, same_failure

STAGE = "infer"
REPLAYS = True  # --replay keeps this module alone (fixtures/cases.py)
pytestmark = pytest.mark.stage


def pytest_generate_tests(metafunc):
    if "bundle" in metafunc.fixturenames:
        dirs = metafunc.config.option.replay
        metafunc.parametrize("bundle", dirs or [None], ids=[Path(d).name for d in dirs] or ["no-bundle"])


def test_replay(bundle, record):
    if bundle is None:
        pytest.skip("no bundle to replay: pass --replay=DIR, a folder --reduce wrote")
    try:
        now, meta = replay(Path(bundle))
    except CannotReduce as e:
        pytest.skip(f"{bundle}: cannot replay here: {e}")
    r = meta["reduction"]
    record(replay={"bundle": str(bundle), "rows": now, "recorded": r["rows"]})
    failing = [v for v in now if v["class"]]
    if failing:
        what = "the failure the bundle recorded" if same_failure(now, meta) else "differently from the bundle"
        details = "; ".join(f"input {v['row']}: {v['class']} at {v['first']} " + (
            f"(max_rel {v['max_rel']:.3g}, {v['nan']} NaN, {v['inf']} Inf)" if v["max_rel"] is not None
            else f"({v.get('error', 'raised')})") for v in failing)
        pytest.fail(f"{r['backend']}-{r['precision']} still fails {what} ({meta['test']}, "
                    f"{len(r['nodes'])} nodes): {details}", pytrace=False)
