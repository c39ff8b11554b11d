"""ONNX Runtime on the GPU: the CUDA and TensorRT execution providers, on the same ONNX file.

ONNX Runtime falls back to the CPU when a provider cannot start, with the reason only in its log; a
session that did not get the provider it asked for is an error carrying that reason, not a slow pass.
Two paths lose it (onnxruntime/python/onnxruntime_inference_collection.py, read in the 1.32.0 wheel; the
1.31.1 wheel the requirements pin was not available here to read):
- a provider not in get_available_providers(): check_and_normalize_provider_args warns ("Specified provider
  ... is not in available provider names") and starts without it;
- a provider that raises while the session is created: InferenceSession.__init__ print()s "EP Error ...
  when using [...]" / "Falling back to [...] and retrying." to stdout and retries on its fallback list.
  Its ``enable_fallback`` keyword (read as int(kwargs.get("enable_fallback", 1)) == 1) turns that retry
  off, so the GPU sessions pass enable_fallback=0 and fail with the provider's own exception; stdout is
  captured too, for an onnxruntime that would fall back anyway.

Inputs and outputs go through IOBinding on the device, so the timed call (run_with_iobinding, which
synchronises the provider's stream) excludes the host<->device copies.

Provider options follow ONNX Runtime's CUDA and TensorRT execution provider documentation
(onnxruntime.ai/docs/execution-providers/{CUDA,TensorRT}-ExecutionProvider.html):
- CUDA: ``use_tf32`` defaults to 1, so fp32 convolutions and matmuls run in TF32 on Ampere and later.
- TensorRT: no provider option clears TensorRT's TF32 builder flag (BuilderFlag.TF32 is on by default;
  onnxruntime-gpu 1.31.1's TensorRT provider has no TF32 option among its trt_* names). TensorRT honours
  NVIDIA_TF32_OVERRIDE=0 at engine build (TensorRT developer guide, "TF32"), so an fp32 session reports
  "tf32" as what it computes in, and fp32 skips with that reason, unless that variable is 0.
"""
from __future__ import annotations

import contextlib
import io as io_module
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from posegate.backends.base import Backend
from posegate.backends.lazy import load, version
from posegate.backends.nvidia import cuda_device, seed_device_name, shape_range
from posegate.backends.onnxruntime.backend import OrtSession

log = logging.getLogger("posegate.backends")
TF32_ENV = "NVIDIA_TF32_OVERRIDE"


def trt_provider_options(spec, precision: str, engine_cache: Path | None = None) -> dict:
    low, opt, high = shape_range(spec)

    def fmt(shape):
        return f"{spec.input_name}:" + "x".join(str(d) for d in shape)
    opts = {"trt_fp16_enable": precision == "fp16", "trt_profile_min_shapes": fmt(low),
            "trt_profile_opt_shapes": fmt(opt), "trt_profile_max_shapes": fmt(high)}
    if engine_cache is not None:
        opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(engine_cache))
    return opts


def trt_execution(precision: str, env=os.environ) -> str:
    """What an onnxruntime-trt engine computes in: TF32 stays on unless NVIDIA_TF32_OVERRIDE=0."""
    if precision == "fp16":
        return "f16"
    return "f32" if env.get(TF32_ENV) == "0" else "tf32"


@contextlib.contextmanager
def captured_stderr():
    """The process's fd 2 while the block runs: ONNX Runtime's C++ logger writes provider failures there."""
    got = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            yield got
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            got["text"] = tmp.read().decode(errors="replace")


class OrtGpuSession(OrtSession):
    """An OrtSession whose input and outputs stay on the device between the timer's ends (IOBinding)."""
    timing = "run_with_iobinding on device-resident input and outputs; host<->device copies outside the timer"

    def __init__(self, *args, device_type="cuda", **kwargs):
        super().__init__(*args, **kwargs)
        self.device_type = device_type

    def _stage(self, x):
        ort = load("onnxruntime")
        binding = self.sess.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(x, self.device_type, 0)
        binding.bind_ortvalue_input(self.io.input, value)
        for name in self.io.engine_outputs:
            binding.bind_output(name, self.device_type, 0)
        return binding, value  # the OrtValue must outlive the run

    def _run(self, staged):
        binding, _ = staged
        self.sess.run_with_iobinding(binding)
        return binding

    def _fetch(self, binding):
        return binding.copy_outputs_to_cpu()


class OrtGpuBackend(Backend):
    provider = ""
    distributions = ("onnxruntime-gpu", "onnxruntime", "tensorrt", "tensorrt-cu12", "tensorrt-cu13")

    artifact_suffixes = (".onnx",)  # no probe of its own: localisation says so

    def unavailable_reason(self):
        try:
            onnxruntime = load("onnxruntime")
        except ImportError as e:
            return str(e)
        if self.provider not in onnxruntime.get_available_providers():
            return (f"this onnxruntime ({onnxruntime.__version__}) has no {self.provider}; "
                    "pip install -r requirements-nvidia.txt (onnxruntime-gpu)")
        gpu, why = cuda_device()
        return None if gpu else why

    def version(self):
        return load("onnxruntime").__version__

    def device(self):
        return seed_device_name(cuda_device()[0])

    def convert(self, source, out_dir, precision, shape):
        shutil.copyfile(source.onnx_path(self.opset), out_dir / "model.onnx")

    def options(self, spec, precision, engine_cache: Path | None) -> dict:
        return {}

    def execution(self, precision) -> str:
        return precision

    def provider_chain(self, spec, precision, engine_cache) -> list[tuple[str, dict]]:
        """(provider, options) in ONNX Runtime's order of precedence; the CPU takes what none claims."""
        return [(self.provider, self.options(spec, precision, engine_cache)), ("CPUExecutionProvider", {})]

    def _session(self, spec, path, precision, io=None, engine_cache=None):
        out = io_module.StringIO()
        with warnings.catch_warnings(record=True) as caught, captured_stderr() as err, \
                contextlib.redirect_stdout(out):
            warnings.simplefilter("always")
            chain = self.provider_chain(spec, precision, engine_cache)
            try:
                session = OrtGpuSession(spec, path, precision, io, providers=[n for n, _ in chain],
                                        provider_options=[o for _, o in chain], backend=self.name,
                                        execution=self.execution(precision), log_severity=2, fallback=False)
            except Exception as e:  # noqa: BLE001 - onnxruntime's Fail/EPFail are not RuntimeErrors; all carry why
                failure = e
            else:
                failure = None

        def said():
            lines = [str(w.message) for w in caught] + out.getvalue().splitlines() + err["text"].splitlines()
            return "; ".join(ln.strip() for ln in lines if ln.strip() and not set(ln.strip()) <= set("*"))
        if failure is not None:
            reason = "; ".join(r for r in (f"{type(failure).__name__}: {failure}", said()) if r)
            log.warning("%s: onnxruntime could not start %s: %s", self.name, self.provider, reason)
            raise RuntimeError(f"{self.name}: onnxruntime could not start {self.provider}: {reason}") from None
        got = session.info.details["providers"]
        if not got or got[0] != self.provider:
            session.close()
            reason = said() or "ONNX Runtime logged no reason"
            log.warning("%s: onnxruntime fell back to %s: %s", self.name, got, reason)
            raise RuntimeError(f"{self.name}: onnxruntime started {got}, not {self.provider}: {reason}")
        if err["text"].strip() or out.getvalue().strip():  # e.g. nodes the provider left to the CPU: kept
            log.info("%s: onnxruntime said while starting: %s", self.name, said())
        return session

    def load(self, artifact_dir, source, precision):
        return self._session(source.spec, artifact_dir / "model.onnx", precision,
                             engine_cache=artifact_dir.with_name(artifact_dir.name + "-trt-engines"))

    def open(self, path, spec, precision, io):
        return self._session(spec, path, precision, io)


class OrtCudaBackend(OrtGpuBackend):
    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32",)  # fp16 on this provider needs an fp16 model; TensorRT covers fp16

    def options(self, spec, precision, engine_cache=None):
        return {"use_tf32": 0}  # default 1: fp32 would be TF32 on Ampere and later

    def execution(self, precision):
        return "f32"


class OrtTensorRtBackend(OrtGpuBackend):
    name = "onnxruntime-trt"
    provider = "TensorrtExecutionProvider"
    precisions = ("fp32", "fp16")

    def precision_problem(self, precision):
        if trt_execution(precision) == "tf32":
            return (f"onnxruntime-trt fp32 computes in TF32 (TensorRT's default; the provider has no option to "
                    f"clear it): start the run with {TF32_ENV}=0 for fp32 parity")
        return None

    def artifact_settings(self, precision, spec=None):
        # the engines cached beside the artifact depend on the TF32 override, the GPU and TensorRT's version
        return {**super().artifact_settings(precision, spec), "execution": trt_execution(precision),
                "gpu": cuda_device()[0], "tensorrt": version("tensorrt")}

    def options(self, spec, precision, engine_cache=None):
        if engine_cache is not None:
            engine_cache.mkdir(mode=0o750, exist_ok=True)
        return trt_provider_options(spec, precision, engine_cache)

    def execution(self, precision):
        return trt_execution(precision)

    def provider_chain(self, spec, precision, engine_cache):
        # nodes TensorRT cannot take run on the CUDA provider (fp32, TF32 off), as ONNX Runtime advises
        return [(self.provider, self.options(spec, precision, engine_cache)),
                ("CUDAExecutionProvider", OrtCudaBackend().options(spec, precision)), ("CPUExecutionProvider", {})]

    def _session(self, *args, **kwargs):
        # the pip TensorRT wheels put libnvinfer where the provider finds it only once imported; a system
        # TensorRT on the library path serves too (the fallback check says if not)
        version("tensorrt")
        return super()._session(*args, **kwargs)
