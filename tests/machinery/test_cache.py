"""The artifact cache: hits on a second run, atomic writes, corrupt entries rebuilt, one builder."""
from __future__ import annotations

import errno
import multiprocessing as mp
import os
import time

import pytest

from posegate.cases.target import Target
from posegate.pipeline import Pipeline
from posegate.storage.cache import ArtifactBuildError, ArtifactCache

STAGE = "export"
pytestmark = pytest.mark.stage


def _writer(counter):
    def build(d):
        with open(counter, "a") as f:
            f.write("built\n")
        time.sleep(0.3)
        (d / "a.bin").write_bytes(b"payload")
    return build


def test_second_run_hits(tmp_path):
    counter = tmp_path / "builds.txt"
    first = ArtifactCache(tmp_path / "c").get_or_build("thing", {"x": 1}, _writer(counter))
    second_cache = ArtifactCache(tmp_path / "c")  # a new session on the same folder
    second = second_cache.get_or_build("thing", {"x": 1}, _writer(counter))
    assert not first.hit and second.hit and second.path == first.path
    assert counter.read_text().count("built") == 1 and second_cache.stats.builds == 0
    other = second_cache.get_or_build("thing", {"x": 2}, _writer(counter))
    assert not other.hit and other.path != first.path


def test_corrupt_entry_is_rebuilt(tmp_path):
    counter = tmp_path / "builds.txt"
    cache = ArtifactCache(tmp_path / "c")
    entry = cache.get_or_build("thing", {"x": 1}, _writer(counter))
    entry.file("a.bin").write_bytes(b"paylo")  # truncated behind the cache's back
    again = cache.get_or_build("thing", {"x": 1}, _writer(counter))
    assert not again.hit and again.file("a.bin").read_bytes() == b"payload"
    assert cache.stats.rebuilt_corrupt == 1


def test_failed_build_leaves_nothing(tmp_path):
    cache = ArtifactCache(tmp_path / "c")

    def broken(d):
        (d / "half.bin").write_bytes(b"x")
        raise RuntimeError("converter crashed")
    with pytest.raises(RuntimeError, match="converter crashed"):
        cache.get_or_build("thing", {"x": 1}, broken)
    leftovers = [p for p in (tmp_path / "c").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert leftovers == []


def test_a_finished_entry_carries_no_temporary_marker(tmp_path):
    """Temporary folders are marked as the suite's while they are built (the start-up clean-up removes
    only marked ones); a finished entry is not one, and its file list is what the builder wrote."""
    entry = ArtifactCache(tmp_path / "c").get_or_build("thing", {"x": 1}, _writer(tmp_path / "n.txt"))
    assert sorted(p.name for p in entry.path.iterdir()) == ["a.bin", "posegate-entry.json"]


def test_a_cache_that_cannot_be_written_fails_the_build_with_the_reason(tmp_path):
    """A write refused inside the cache (full disk, read-only) is an ArtifactBuildError naming the cache;
    a builder's own OSError about a file elsewhere keeps its type and message."""
    cache = ArtifactCache(tmp_path / "c")

    def full(d):
        raise OSError(errno.ENOSPC, "No space left on device", str(d / "model.onnx"))
    with pytest.raises(ArtifactBuildError, match=r"the cache .* cannot be written \(No space left on device"):
        cache.get_or_build("thing", {"x": 1}, full)

    def missing_input(d):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/nonexistent/input.onnx")
    with pytest.raises(FileNotFoundError, match="/nonexistent/input.onnx"):
        cache.get_or_build("thing", {"x": 2}, missing_input)


def _build_in_process(root, counter, queue):
    queue.put(ArtifactCache(root).get_or_build("thing", {"x": 1}, _writer(counter)).hit)


def test_two_processes_build_once(tmp_path):
    counter = tmp_path / "builds.txt"
    ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_process, args=(tmp_path / "c", counter, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    hits = sorted(queue.get(timeout=5) for _ in procs)
    assert counter.read_text().count("built") == 1 and hits == [False, True]


@pytest.mark.cases("model")
def test_pipeline_rebuilds_nothing_on_a_second_run(case, run_context, tmp_path, needs):
    """The real artifacts: an ONNX export and its conversion are hits for a fresh session."""
    spec = case.spec
    first = Pipeline(ArtifactCache(tmp_path / "c"), run_context.weights_dir)
    needs(first.converted, Target(spec, "openvino", "fp32"))
    second = Pipeline(ArtifactCache(tmp_path / "c"), run_context.weights_dir)
    second.converted(Target(spec, "openvino", "fp32"))
    assert second.cache.stats.builds == 0 and second.cache.stats.hits == 2, second.cache.stats
