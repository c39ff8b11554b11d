"""The gate's truth table: for every way a run can fail to measure what it gates, the README's nightly
commands exit non-zero and the saved baseline is byte for byte what it was; a complete good run saves, and
a rerun against it passes.

The rows run pytest in-process (pytester) on a small stand-in suite that uses the real plugins (`needs`,
`record`, the gate, the summary): a convert stage test, the accuracy tests that depend on its build, and a
benchmark. The stand-in's build raises the very StageFailed the pipeline raises, so what is faked is only
the work, never the gate. One row runs the real suite in a subprocess: the issue's empty `--artifact`.
"""
from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from types import SimpleNamespace

import pytest

from fixtures import gate
from fixtures.options import SELECTED
from posegate.compat import release
from posegate.context import REPO
from posegate.gate.baseline import AccuracyBaseline
from posegate.gate.machine import fingerprint
from posegate.gate.throughput import ThroughputBaseline
from posegate.storage import atomic, digests

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.stage
STAGE = "weights"

CONFTEST = ('pytest_plugins = ["fixtures.options", "fixtures.cases", "fixtures.artifacts", "fixtures.gate", '
            '"fixtures.report"]\n')
CASE = "m-onnxruntime-fp32"
# The stand-in suite. MODE picks what goes wrong; the build raises what posegate.pipeline's memo raises.
COMMON = f'''
import pytest
from types import SimpleNamespace
from posegate.pipeline import StageFailed

MODE = "{{mode}}"
CASE = SimpleNamespace(id="{CASE}")
PARAM = pytest.mark.parametrize("which", [CASE.id])


def build(dependant=False):
    # "flaky": the dependant's build fails where the stage test's own passed (a worker-local failure)
    if MODE in ("build-failure", "deselected-prerequisite") or (MODE == "flaky" and dependant):
        raise StageFailed("convert", "test_convert", CASE, OSError(28, "No space left on device"))
    return 0.5 if MODE == "regressed" else 0.75
'''
SUITE = {
    "test_fake_convert.py": COMMON + '''
STAGE = "convert"
pytestmark = pytest.mark.stage


@PARAM
def test_convert(which, needs):
    build()
''',
    "test_fake_accuracy.py": COMMON + '''
STAGE = "accuracy"
pytestmark = pytest.mark.accuracy
IDENT = dict(dataset="mini", dataset_id="mini@1", weights="w@1")


@pytest.fixture
def data():
    if MODE == "setup-skip":
        pytest.skip("no dataset with images: give --data-root")


@PARAM
def test_accuracy(which, needs, record, data):
    if MODE == "crash":
        raise RuntimeError("the decoder crashed")
    value = needs(build, dependant=True)
    if MODE == "interrupt":
        raise KeyboardInterrupt
    if MODE.startswith("wait-for-ctrl-c:"):  # tell the test driving this run, then wait for its SIGINT
        import pathlib, time
        pathlib.Path(MODE.split(":", 1)[1]).write_text("measuring")
        time.sleep(120)
    if MODE != "unmeasured":
        record(metric="AP", value=value, direction="min", **IDENT)


@PARAM
def test_metric_parity(which, needs, record):
    record(metric="|AP-AP_ref|", value=0.0, direction="max", threshold=0.01, **IDENT)
''',
    "test_fake_perf.py": COMMON + '''
STAGE = "perf"
pytestmark = pytest.mark.perf


@PARAM
def test_perf_device(which, needs, record):
    needs(build)
    record(throughput=50.0 if MODE == "regressed" else 100.0, valid=True, unit="images")
''',
}
GOOD_THROUGHPUT = {"name": f"test_perf_device[{CASE}]",
                   "extra_info": {"samples_per_second": 100.0, "valid": True, "unit": "images"}}


@pytest.fixture
def suite(pytester, monkeypatch, tmp_path):
    """``suite(mode, *args)``: run the stand-in suite in-process; returns (exit code, output)."""
    for name in ("POSEGATE_DATA_ROOT", "POSEGATE_WEIGHTS_DIR", "POSEGATE_CACHE_DIR", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(digests, "_store", digests._store)  # the inner run points it at its own cache
    pytester.makeconftest(CONFTEST)

    def run(mode, *args):
        for name, text in SUITE.items():
            pytester.makepyfile(**{name[:-3]: text.replace("{mode}", mode)})
        # unraisableexception and threadexception run gc.collect() at the end (seconds in a process holding
        # torch), hypothesis's plugin re-imports (and assertion-rewrites) hypothesis each run: none is needed
        r = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
                                         "-p", "no:threadexception", "-p", "no:hypothesispytest", "-p", "no:xdist",
                                         "-rs",
                                         f"--cache-dir={tmp_path / 'cache'}", *args, no_reraise_ctrlc=True)
        return int(r.ret), "\n".join(r.outlines + r.errlines)
    return run


@pytest.fixture
def nightly(tmp_path, suite):
    """The README's nightly commands on the stand-in suite; the good night's baselines are in place."""
    base, thr = tmp_path / "accuracy.json", tmp_path / "throughput.json"
    ret, out = suite("good", "-m", "accuracy", f"--save-accuracy-baseline={base}")
    assert ret == 0, out
    thr.write_text(json.dumps({"machine_info": {"posegate": fingerprint()}, "benchmarks": [GOOD_THROUGHPUT]}))

    class Night:
        accuracy, throughput = base, thr
        run = staticmethod(suite)

        @staticmethod
        def save(mode, *args):
            return suite(mode, "-m", "accuracy", f"--save-accuracy-baseline={base}", *args)

        @staticmethod
        def gate(mode, *args):
            return suite(mode, "-m", "accuracy", f"--accuracy-baseline={base}", f"--report-md={tmp_path / 'a.md'}",
                         f"--report-json={tmp_path / 'a.json'}", f"--junitxml={tmp_path / 'a.xml'}", *args)

        @staticmethod
        def perf_gate(mode, *args):
            return suite(mode, "-m", "perf", f"--throughput-baseline={thr}", "--throughput-floor=0.9",
                         f"--report-md={tmp_path / 'perf.md'}", *args)
    return Night


def test_a_complete_good_run_saves_and_a_rerun_against_it_passes(nightly):
    saved = json.loads(nightly.accuracy.read_text())
    assert sorted(saved["entries"]) == [f"test_accuracy[{CASE}]::AP", f"test_metric_parity[{CASE}]::|AP-AP_ref|"]
    ret, out = nightly.gate("good")
    assert ret == 0 and "baseline gate" not in out, out
    ret, out = nightly.perf_gate("good")
    assert ret == 0 and "baseline gate" not in out, out


# mode, extra selection, exit code of the save and the gate command, what the gate says
ROWS = {
    "build-failure": ("build-failure", (), 1, 1, "convert failed (see test_convert[m-onnxruntime-fp32]): "
                      "OSError: [Errno 28] No space left on device (test_convert[m-onnxruntime-fp32] is not "
                      "selected in this run"),
    "build-failure-stage-selected": ("build-failure", ("-m", "accuracy or stage"), 1, 1,
                                     "baseline gate: not measured: AP: convert failed (see test_convert["),
    "crash-in-a-stage": ("crash", (), 1, 1, "RuntimeError: the decoder crashed"),
    "deselected-prerequisite": ("deselected-prerequisite", ("-m", "accuracy or stage", "-k", "not test_convert"),
                                1, 1, "is not selected in this run, so this test reports it"),
    "interruption": ("interrupt", (), 2, 2, "KeyboardInterrupt"),
    "empty-selection": ("good", ("-k", "no_such_test"), 5, 4, "none of its 2 tests is selected in this run"),
    "regression": ("regressed", (), None, 1, "baseline gate: AP regressed: 0.5 vs baseline 0.75"),
    "skipped-before-measuring": ("setup-skip", (), None, 1,
                                 "not measured: test_accuracy[m-onnxruntime-fp32]: AP (skipped: no dataset with "
                                 "images: give --data-root)"),
    "passed-without-measuring": ("unmeasured", (), None, 1,
                                 "baseline gate: not measured: AP: the test passed without measuring it"),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_a_run_that_did_not_measure_is_never_green_and_never_touches_the_baseline(row, nightly):
    mode, selection, save_exit, gate_exit, says = ROWS[row]
    before = nightly.accuracy.read_bytes()
    if save_exit is not None:  # a night that skips or regresses may still be accepted by the save command
        ret, out = nightly.save(mode, *selection)
        assert ret == save_exit, out
        assert "accuracy baseline not saved" in out and f"{nightly.accuracy} is unchanged" in out, out
        assert nightly.accuracy.read_bytes() == before
    ret, out = nightly.gate(mode, *selection)
    assert ret == gate_exit, out
    assert says in out, out
    # gating and saving onto the gated file, as asked for by name: still never after a failing run
    ret, out = nightly.gate(mode, *selection, f"--save-accuracy-baseline={nightly.accuracy}", "--overwrite-baseline")
    assert ret == gate_exit, out
    assert nightly.accuracy.read_bytes() == before
    assert not [p for p in nightly.accuracy.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("mode,selection,code,says", [
    ("build-failure", (), 1, "convert failed (see test_convert[m-onnxruntime-fp32])"),
    ("regressed", (), 1, "throughput regressed: 50.00 images/s < 90% of baseline 100.00"),
    ("good", ("-k", "no_such_test"), 4, "--throughput-baseline="),
])
def test_the_throughput_gate_is_never_green_on_what_it_did_not_measure(nightly, mode, selection, code, says):
    ret, out = nightly.perf_gate(mode, *selection)
    assert ret == code and says in out, out


def test_a_skip_counts_only_where_the_failed_stage_test_runs_and_fails(suite, tmp_path):
    ret, out = suite("build-failure", "-m", "accuracy or stage")
    assert ret == 1, out
    assert "1 failed, 1 passed, 1 skipped" in out, out  # the convert test fails, its dependant skips
    ret, out = suite("build-failure", "-m", "accuracy")  # issue 27: 'N skipped, exit 0' before
    assert ret == 1 and "1 failed, 1 passed" in out, out
    ret, out = suite("flaky", "-m", "accuracy or stage")  # the stage test passed: the skip would hide a failure
    assert ret == 1 and "2 passed, 1 skipped" in out, out
    assert (f"posegate: test_accuracy[{CASE}] skipped because test_convert[{CASE}] failed, but "
            f"test_convert[{CASE}] did not fail in this run: nothing reports the failure") in out, out


def test_under_xdist_the_controller_takes_the_selection_from_what_the_workers_collected(tmp_path):
    """The xdist controller collects nothing: the workers' node ids are the selection it gates."""
    base = AccuracyBaseline({f"test_accuracy[{CASE}]::AP": {"value": 0.75}}, path=tmp_path / "b.json")
    config = SimpleNamespace(stash={gate.ACCURACY: base, gate.THROUGHPUT: None})
    gate.pytest_xdist_node_collection_finished(SimpleNamespace(config=config),
                                               [f"tests/test_fake_accuracy.py::test_accuracy[{CASE}]"])
    assert config.stash[SELECTED] == {f"test_accuracy[{CASE}]"}
    assert gate.unmeasured_entries(config, []) == [f"not measured: test_accuracy[{CASE}]: AP (did not run)"]
    config = SimpleNamespace(stash={gate.ACCURACY: base, gate.THROUGHPUT: None})
    with pytest.raises(pytest.UsageError, match=r"none of its 1 tests is selected in this run \(1 selected\)"):
        gate.pytest_xdist_node_collection_finished(SimpleNamespace(config=config), ["tests/t.py::test_other[x]"])


# ---- item 2: outputs never overwrite inputs or each other; every write is whole or absent ---------------

@pytest.mark.parametrize("clash", ["report-json=report-md", "report-json=accuracy-baseline",
                                   "junitxml=accuracy-baseline", "save=gated-without-overwrite",
                                   "report-md=symlink-to-accuracy-baseline"])
def test_one_file_is_never_two_things(clash, nightly, tmp_path):
    before = nightly.accuracy.read_bytes()
    base = nightly.accuracy
    link = tmp_path / "link.md"
    link.symlink_to(base)
    args = {"report-json=report-md": [f"--report-json={tmp_path / 'r'}", f"--report-md={tmp_path / 'r'}"],
            "report-json=accuracy-baseline": [f"--report-json={base}", f"--accuracy-baseline={base}"],
            "junitxml=accuracy-baseline": [f"--junitxml={base}", f"--accuracy-baseline={base}"],
            "save=gated-without-overwrite": [f"--save-accuracy-baseline={base}", f"--accuracy-baseline={base}"],
            "report-md=symlink-to-accuracy-baseline": [f"--report-md={link}", f"--accuracy-baseline={base}"]}[clash]
    ret, out = nightly.run("good", "-m", "accuracy", *args)
    assert ret == 4, out
    expected = "add --overwrite-baseline" if clash.startswith("save") else "name the same file"
    assert expected in out and "Traceback" not in out, out
    assert base.read_bytes() == before


def test_the_benchmark_json_is_never_the_throughput_baseline(nightly):
    ret, out = nightly.perf_gate("good", f"--benchmark-json={nightly.throughput}")
    assert ret == 4 and f"--benchmark-json={nightly.throughput} and --throughput-baseline" in out, out
    # pytest-benchmark < 5.3 opens (empties) the file while parsing the command line, 5.3 writes it at the end
    opens_early = release(metadata.version("pytest-benchmark")) < (5, 3)
    assert ("pytest-benchmark opened" in out) == opens_early, out


@pytest.mark.parametrize("target", ["accuracy baseline", "posegate report"])
def test_a_full_disk_leaves_the_old_file_whole_and_fails_with_one_line(target, nightly, monkeypatch, tmp_path):
    base = nightly.accuracy
    before = base.read_bytes()
    report = tmp_path / "old-report.json"
    report.write_text('{"rows": []}')

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(atomic.os, "fsync", full)  # the data went to a temporary file; flushing it fails
    if target == "accuracy baseline":
        ret, out = nightly.save("good")
        path, old = base, before
    else:
        ret, out = nightly.run("good", "-m", "accuracy", f"--report-json={report}")
        path, old = report, b'{"rows": []}'
    assert ret == 1, out
    line = f"{target} {path} not written (No space left on device); the previous file is unchanged"
    assert [x for x in out.splitlines() if "not written" in x] == [line], out
    assert path.read_bytes() == old
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "b.json"
    path.write_text("old")
    path.chmod(0o640)

    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_text(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["b.json"]
    monkeypatch.undo()
    atomic.write_text(path, "new")
    assert path.read_text() == "new" and (path.stat().st_mode & 0o777) == 0o640  # permissions kept


# ---- item 3: baseline values are checked when loaded ----------------------------------------------------

def _accuracy_file(tmp_path, value, metric="AP"):
    path = tmp_path / "acc.json"
    text = json.dumps({"format": "posegate-accuracy-baseline/1",
                       "entries": {f"test_accuracy[{CASE}]::{metric}": {"value": value, "direction": "min"}}})
    path.write_text(text.replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))
    return path


@pytest.mark.parametrize("value,metric,why", [
    ("NaN", "AP", "value nan is not finite"), ("Infinity", "max_abs[out]", "value inf is not finite"),
    (-0.1, "AP", "value -0.1 is below 0"), ("high", "AP", "value 'high' is not a number"),
    (None, "AP", "value None is not a number"), (True, "AP", "value True is not a number"),
    (1.5, "cosine[out]", "value 1.5 is above 1"), (-1.5, "cosine[out]", "value -1.5 is below -1"),
])
def test_an_accuracy_baseline_value_that_cannot_be_compared_is_refused_naming_the_entry(tmp_path, value, metric,
                                                                                       why):
    with pytest.raises(ValueError, match="malformed entries") as e:
        AccuracyBaseline.load(_accuracy_file(tmp_path, value, metric))
    assert f"'test_accuracy[{CASE}]::{metric}' {why}" in str(e.value)


def test_good_baseline_values_load(tmp_path):
    assert AccuracyBaseline.load(_accuracy_file(tmp_path, 0.0)).metrics_of(f"test_accuracy[{CASE}]") == {"AP"}
    assert AccuracyBaseline.load(_accuracy_file(tmp_path, -0.5, "cosine[out]")).entries


@pytest.mark.parametrize("rate,why", [
    ("NaN", "samples_per_second nan is not a positive finite rate"),
    ("Infinity", "samples_per_second inf is not a positive finite rate"),
    (0, "samples_per_second 0 is not a positive finite rate"), (-3.0, "-3.0 is not a positive finite rate"),
    ("fast", "samples_per_second 'fast' is not a number"),
])
def test_a_throughput_baseline_rate_that_cannot_be_a_floor_is_refused_naming_the_benchmark(tmp_path, rate, why):
    path = tmp_path / "bench.json"
    bench = {**GOOD_THROUGHPUT, "extra_info": {**GOOD_THROUGHPUT["extra_info"], "samples_per_second": rate}}
    text = json.dumps({"machine_info": {"posegate": fingerprint()}, "benchmarks": [bench]})
    path.write_text(text.replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))
    with pytest.raises(ValueError, match=f"malformed benchmark 'test_perf_device\\[{CASE}\\]'") as e:
        ThroughputBaseline.load(path)
    assert why in str(e.value)


def test_a_bad_baseline_value_stops_the_run_with_one_line(suite, tmp_path):
    path = _accuracy_file(tmp_path, "NaN")
    ret, out = suite("good", "-m", "accuracy", f"--accuracy-baseline={path}")
    assert ret == 4 and "Traceback" not in out, out
    assert [x for x in out.splitlines() if x.startswith("ERROR")] == [
        f"ERROR: accuracy baseline {path}: malformed entries: 'test_accuracy[{CASE}]::AP' value nan is not finite; "
        "save it again with --save-accuracy-baseline"], out


def test_a_measurement_the_loader_would_refuse_is_never_saved(tmp_path):
    b = AccuracyBaseline({f"t[{CASE}]::AP": {"value": math.nan}})
    with pytest.raises(ValueError, match=r"not written: t\[m-onnxruntime-fp32\]::AP value nan is not finite"):
        b.save(tmp_path / "b.json", {})
    assert not (tmp_path / "b.json").exists()


def _as_a_terminal_job():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def test_ctrl_c_in_a_real_process_leaves_the_baseline_as_it_was(tmp_path):
    """A real SIGINT, as a terminal's Ctrl-C sends it, while a test measures: exit 2, the file untouched."""
    (tmp_path / "conftest.py").write_text(CONFTEST)
    flag = tmp_path / "flag"
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text.replace("{mode}", f"wait-for-ctrl-c:{flag}"))
    base = tmp_path / "accuracy.json"
    base.write_text("the night before")
    env = {k: v for k, v in os.environ.items() if k not in ("POSEGATE_DATA_ROOT", "POSEGATE_WEIGHTS_DIR",
                                                            "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env["PYTHONPATH"] = str(REPO)
    # As a shell starts a foreground job: SIGINT at its default and unblocked, whatever this worker inherited
    # (a disposition of SIG_IGN and a blocked mask both survive exec).
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                             "-p", "no:xdist", "-m", "accuracy", f"--cache-dir={tmp_path / 'cache'}",
                             f"--save-accuracy-baseline={base}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_as_a_terminal_job)
    inherited = (f"this process: SIGINT {signal.getsignal(signal.SIGINT)!r}, "
                 f"blocked {signal.pthread_sigmask(signal.SIG_BLOCK, [])}")
    try:
        deadline = time.monotonic() + 240  # a cold start on a loaded 2-core runner: imports, collection
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        reached = flag.exists()
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"no exit 60 s after SIGINT (measuring test reached: {reached}; {inherited}):\n{out}")
    finally:
        proc.kill()
    assert reached, f"the run never reached the measuring test in 240 s:\n{out}"
    assert proc.returncode == 2, out
    assert "accuracy baseline not saved: the run was interrupted" in out, out
    assert base.read_text() == "the night before"


# ---- the real suite: the empty artifact -----------------------------------------------------------

def test_the_real_suite_with_an_empty_artifact_fails_and_keeps_the_baseline(tmp_path, run_context):
    """Issue 27, verified on main before the fix: '3 skipped ("convert failed ...")', exit 0."""
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    base = tmp_path / "accuracy.json"
    base.write_text("the night before")
    env = {k: v for k, v in os.environ.items() if k not in ("POSEGATE_DATA_ROOT", "POSEGATE_WEIGHTS_DIR",
                                                            "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
           "tests/stages/test_accuracy.py", "-m", "accuracy", "-k", "omz0001 and onnxruntime and artifact",
           f"--cache-dir={run_context.cache_dir}", f"--artifact=lightweight_openpose_omz0001:onnxruntime={empty}",
           f"--save-accuracy-baseline={base}"]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout[-3000:]
    assert "convert failed (see test_artifact[lightweight_openpose_omz0001-onnxruntime-fp32-bs1-368x640-artifact])" \
           in run.stdout and "is not selected in this run" in run.stdout, run.stdout[-3000:]
    assert " skipped" not in run.stdout.splitlines()[-1], run.stdout[-3000:]
    assert base.read_text() == "the night before"
