"""Build and run a subgraph on the failing backend, counting conversions, and write the converter call a
vendor would type for it.

ONNX Runtime and OpenVINO run here. TensorRT and Ascend reductions need their device: their converter
calls are written (trtexec, ATC) but a search on them is refused with the reason until a runner that
feeds several named inputs exists for them.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import onnx

from posegate.backends import BACKENDS, npu
from posegate.backends.ascend import atc
from posegate.backends.openvino.precision import inference_hint as ov_hint
from posegate.diagnosis.reduce.reference import CannotReduce


class OrtRunner:
    backend = "onnxruntime"

    def __init__(self, precision: str = "fp32"):
        self.precision, self.conversions = precision, 0

    def run(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import onnxruntime as ort  # noqa: PLC0415 (optional engine, lazy)
        self.conversions += 1
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in model.graph.output]
        return dict(zip(names, sess.run(names, feeds)))


class OvRunner:
    """ONNX -> IR as the openvino backend converts (fp16: weights compressed), compiled with the inference
    precision its sessions ask this CPU for."""
    backend = "openvino"

    def __init__(self, precision: str = "fp32"):
        self.precision, self.conversions, self.hint = precision, 0, ov_hint(precision)

    def run(self, model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import openvino as ov  # noqa: PLC0415 (optional engine, lazy)
        self.conversions += 1
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "model.onnx"
            onnx.save(model, str(path))
            ov.save_model(ov.convert_model(str(path)), str(Path(d) / "model.xml"),
                          compress_to_fp16=self.precision == "fp16")
            core = ov.Core()
            compiled = core.compile_model(str(Path(d) / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": self.hint})
            result = compiled.create_infer_request().infer(feeds)
            out = {}
            for port, value in zip(compiled.outputs, result.values()):
                for name in port.get_names():
                    out[name] = np.array(value)
        return {o.name: out[o.name] for o in model.graph.output}


RUNNERS = {"onnxruntime": OrtRunner, "openvino": OvRunner}


def runner(backend: str, precision: str):
    reason = BACKENDS[backend].unavailable_reason() if backend in BACKENDS else f"no backend named {backend}"
    if reason:
        raise CannotReduce(f"{backend} unavailable: {reason}")
    if backend not in RUNNERS:
        raise CannotReduce(f"{backend}: no runner feeds a subgraph's named inputs on it yet ({', '.join(RUNNERS)} "
                           "have one); localisation and the converter call still apply")
    return RUNNERS[backend](precision)


def converter_call(backend: str, precision: str, feeds: dict[str, np.ndarray], spec=None) -> dict:
    """What builds ``model.onnx`` of a bundle on ``backend``: the suite's own conversion, as one command."""
    settings = BACKENDS[backend].settings_of(spec) if spec is not None and backend in BACKENDS else None
    out = {"settings": asdict(settings) if is_dataclass(settings) else None}
    if backend == "onnxruntime":
        out["python"] = ("onnxruntime.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])"
                         ".run(None, inputs)")
    elif backend == "openvino":
        # as posegate.backends.openvino converts and loads (fp16 weights compressed, the CPU hint pinned)
        out["command"] = ["ovc", "model.onnx", "--output_model", "model.xml",
                          f"--compress_to_fp16={precision == 'fp16'}"]
        out["python"] = ("ov.Core().compile_model('model.xml', 'CPU', {'INFERENCE_PRECISION_HINT': "
                         f"{_hint(precision)!r}}})")
    elif backend == "tensorrt":
        # trtexec's --noTF32 as the suite's build_engine clears BuilderFlag.TF32; shapes as the inputs' own
        shapes = ",".join(f"{n}:{'x'.join(str(d) for d in a.shape)}" for n, a in feeds.items())
        out["command"] = ["trtexec", "--onnx=model.onnx", *(["--fp16"] if precision == "fp16" else []), "--noTF32",
                          f"--shapes={shapes}", "--saveEngine=model.engine"]
    elif backend == "ascend":
        chip, _ = npu.chip_name()
        shapes = ";".join(f"{n}:{','.join(str(d) for d in a.shape)}" for n, a in feeds.items())
        out["command"] = ["atc", "--framework=5", "--model=model.onnx", "--output=model", "--input_format=ND",
                          f'--input_shape="{shapes}"',
                          *(atc.fp32_flags(chip or "310P3") if precision == "fp32" else []),
                          f"--soc_version=Ascend{chip or '<chip>'}"]
    return out


def _hint(precision: str) -> str:
    try:
        return ov_hint(precision)
    except ImportError:  # a bundle written where openvino is absent names the first hint the backend asks for
        return {"fp16": "f16", "fp32": "f32"}.get(precision, "f32")
