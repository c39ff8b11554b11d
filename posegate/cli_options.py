"""posegate's command-line options, in one place so they can be registered before pytest reads the
command line.

pytest only knows an option's arity once a plugin has added it; before the conftest is loaded it takes
the ``/data`` of ``--data-root /data`` for a test path (and looks for its rootdir there). The
``pytest11`` entry point of ``pip install -e .`` (``posegate.pytest_plugin``) adds these options first
thing, and the conftest plugins add them again: ``add`` skips the ones already there, so both orders work.
"""
from __future__ import annotations


def add(parser) -> None:
    g = parser.getgroup("posegate")
    known = {name for opt in g.options for name in opt.names()}

    def addoption(*names, **kwargs):
        if not known.intersection(names):
            g.addoption(*names, **kwargs)
    addoption("--data-root", help="folder of datasets (each COCO-layout subfolder is one); env POSEGATE_DATA_ROOT. "
                                  "Without it a synthetic set is generated.")
    addoption("--weights-dir", help="folder holding the official checkpoints by their file names; "
                                    "env POSEGATE_WEIGHTS_DIR. Without it networks get seeded random weights.")
    addoption("--reference-dir", help="folder with manifests/ and golden/; env POSEGATE_REFERENCE_DIR "
                                      "(default: the data root, else ../shared/data beside the repository)")
    addoption("--cache-dir", help="artifact cache; env POSEGATE_CACHE_DIR (default .posegate_cache)")
    addoption("--full", action="store_true", help="also run the full selection (every batch size and shape)")
    addoption("--report-json", metavar="PATH", help="write the summary rows as JSON")
    addoption("--artifact", action="append", default=[], metavar="MODEL:BACKEND[:PRECISION]=PATH",
              help="validate a converted model you already have (an IR, OM file or engine) in that slot instead of "
                   "exporting and converting one: its names and shapes are checked first, then infer, accuracy "
                   "and perf run on it; precision defaults to the spec contract's, else fp32. Repeatable.")
    addoption("--port", action="append", default=[], metavar="MODEL:KIND=PATH",
              help="audit your port's own files: KIND inputs (the preprocess script's folder), info (its side file, "
                   "e.g. pad.txt), outputs[:fp16|:fp32] (the device run's folder; the precision it ran in, default "
                   "fp32), results (the postprocess script's results file). Repeatable; selects `-m port` tests too")
    addoption("--report-md", metavar="PATH", help="write the summary table, failures and skips as Markdown")
    addoption("--shard", metavar="K/N", help="predict only shard K of N of each full-dataset evaluation and write it "
                                             "to --predictions-dir; scoring waits for --merge-predictions")
    addoption("--predictions-dir", metavar="DIR", help="where shards write predictions (default CACHE/shards)")
    addoption("--merge-predictions", metavar="DIR", help="score the merged shards found in DIR instead of predicting")
    # when a port fails: where, and what to keep in fp32
    addoption("--localize", action="store_true",
              help="localise every infer case (failing ones always are): the first intermediate tensor beyond its "
                   "tolerance against torch, in the report and as a PNG beside the worst-case pictures")
    addoption("--advise-precision", metavar="DIR", nargs="?", const="posegate-advice", default=None,
              help="for each fp16 infer case of openvino, tensorrt, ascend: layers to keep in fp32 (re-validated on "
                   "OpenVINO), as ATC --keep_dtype, trtexec --layerPrecisions and OpenVINO rt_info files under DIR "
                   "(default posegate-advice; write --advise-precision=DIR); then the smallest set that keeps the "
                   "task metric within the spec's metric_parity, under DIR/.../metric (up to 20 evaluations)")
    addoption("--reduce", metavar="DIR", nargs="?", const="posegate-reduced", default=None,
              help="for each failing infer case: the smallest subgraph of its ONNX that fails the same way on its "
                   "backend, fed with the torch reference's tensors, as a bundle under DIR that --replay replays "
                   "(default posegate-reduced; write --reduce=DIR)")
    addoption("--replay", metavar="DIR", action="append", default=[],
              help="replay a bundle --reduce wrote (repeatable): only the replay test runs; it fails while the "
                   "reduced failure reproduces on this machine")
    addoption("--baseline-backend", metavar="BACKEND", default=None,
              help="the backend generic checks measure against where one engine stands for all (sharded "
                   "predictions, decode cost); env POSEGATE_BASELINE_BACKEND (default onnxruntime)")
    addoption("--boxes", choices=("detections", "ground-truth"), default=None,
              help="person boxes of top-down models: the dataset's detections/*.json (default, the official "
                   "protocol) or its ground-truth boxes; env POSEGATE_BOXES")
    addoption("--accuracy-baseline", metavar="PATH", help="compare every metric and parity error with this baseline")
    addoption("--save-accuracy-baseline", metavar="PATH",
              help="write this run's metrics as a baseline, only after a complete run that measured something and "
                   "had no failure")
    addoption("--overwrite-baseline", action="store_true",
              help="allow --save-accuracy-baseline to replace the --accuracy-baseline this run gates against "
                   "(written only if the run passes the gate)")
    addoption("--throughput-baseline", metavar="PATH",
              help="a pytest-benchmark JSON (--benchmark-json or autosave) whose samples/s are the baseline")
    addoption("--save-visuals", metavar="DIR",
              help="save pictures of every accuracy result's worst cases here (failures always get them, by default "
                   "in ./posegate-visuals)")
    addoption("--throughput-floor", type=float, default=0.8, metavar="FRACTION",
              help="a benchmark fails below this fraction of its baseline samples/s (default 0.8)")
