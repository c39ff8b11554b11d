"""NVIDIA TensorRT: engines built from the exported ONNX (fp32, fp16) with one optimisation profile
spanning every input profile, cached like any artifact; device buffers through torch's CUDA.

Written against TensorRT 10's Python API (tensorrt.IBuilderConfig, IOptimizationProfile,
IExecutionContext: docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api). Every call that
reports failure by its return value (set_input_shape, set_tensor_address, execute_async_v3,
add_optimization_profile, build_serialized_network) is checked: TensorRT does not raise there.
IOptimizationProfile.set_shape is the exception: its binding (NVIDIA/TensorRT python/src/infer/pyCore.cpp,
lambdas::opt_profile_set_shape) raises RuntimeError "Shape provided for min|opt|max is inconsistent with
other shapes." where setDimensions fails, and returns nothing otherwise.

Timing: the input is uploaded and bound before the timer, the outputs downloaded after it; CUDA events
around execute_async_v3 give the device compute time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from posegate.backends.base import Backend, EngineIO, Session, SessionInfo
from posegate.backends.lazy import load, reason
from posegate.backends.nvidia import cuda_device, seed_device_name, shape_range
from posegate.backends.probing import device_source
from posegate.backends.tensorrt.advice import write as write_advice
from posegate.backends.tensorrt.probe import TrtProbe

INSTALL = "pip install -r requirements-nvidia.txt (tensorrt-cu13)"


class EngineBuildError(RuntimeError):
    pass


SUBGRAPH_IO = EngineIO("", ())  # a reduced subgraph's session: its inputs and outputs are the engine's own


def build_engine(trt, onnx_path: Path, engine_path: Path, input_name: str, precision: str, shapes,
                 workspace_bytes: int = 2 << 30) -> dict:
    """Parse, configure (precision, optimisation profile), build and write the serialized engine."""
    build_engine_for(trt, onnx_path, engine_path, precision, {input_name: shapes}, workspace_bytes)
    low, opt, high = shapes
    return {"min": list(low), "opt": list(opt), "max": list(high), "tf32": False}


def build_engine_for(trt, onnx_path: Path, engine_path: Path, precision: str, shapes: dict,
                     workspace_bytes: int = 2 << 30) -> None:
    """``build_engine`` with one optimisation profile over several named inputs: ``shapes`` maps each
    input to its (min, opt, max); a reduced subgraph gives each input its feed's exact shape three times."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10, gone later
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser failed: " + "; ".join(errors))
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    # A builder config starts with BuilderFlag.TF32 set: on Ampere and later (an H200 too) fp32
    # convolutions and matmuls would run with 10-bit mantissas, ~1e-3 relative error
    config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16":
        if getattr(builder, "platform_has_fast_fp16", True) is False:
            raise EngineBuildError("this GPU has no fast fp16: TensorRT would build fp32 and call it fp16")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision != "fp32":
        raise EngineBuildError(f"no TensorRT build for precision {precision!r} (fp32, fp16)")
    profile = builder.create_optimization_profile()
    for input_name, (low, opt, high) in shapes.items():
        try:
            profile.set_shape(input_name, low, opt, high)
        except RuntimeError as e:
            raise EngineBuildError(f"{onnx_path}: TensorRT refused the profile {input_name} min {low} opt {opt} "
                                   f"max {high}: {e}") from None
    span = ", ".join(f"{n + ' ' if len(shapes) > 1 else ''}{lo}..{hi}" for n, (lo, _, hi) in shapes.items())
    if not profile:
        raise EngineBuildError(f"{onnx_path}: TensorRT refused the profile " + "; ".join(
            f"{n} {lo}..{o}..{hi}" for n, (lo, o, hi) in shapes.items()))
    if config.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"{onnx_path}: TensorRT refused the optimisation profile {span}")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT built no engine ({precision}, profile {span})")
    Path(engine_path).write_bytes(bytes(serialized))


def bind(context, feeds: dict, outputs: list[str], device, profile_of) -> dict:
    """Set each input's shape, upload it, allocate each output at the shape TensorRT resolved and bind every
    address (IExecutionContext.set_input_shape / get_tensor_shape / set_tensor_address, which answer False or
    -1 dims instead of raising); {tensor: (buffer, address)}."""
    buffers = {}
    for name, x in feeds.items():
        if not context.set_input_shape(name, tuple(x.shape)):
            raise ValueError(f"tensorrt: input {name!r} of shape {tuple(x.shape)} is outside the engine's "
                             f"{profile_of(name)}")
        buffers[name] = device.upload(x)
    shapes = {n: tuple(x.shape) for n, x in feeds.items()}
    given = next(iter(shapes.values())) if len(shapes) == 1 else shapes
    for out in outputs:
        shape = tuple(context.get_tensor_shape(out))
        if any(d < 0 for d in shape):
            raise RuntimeError(f"tensorrt: output {out!r} has unresolved shape {shape} for input {given}")
        buffers[out] = device.empty(shape)
    for n, (_, ptr) in buffers.items():
        if not context.set_tensor_address(n, ptr):
            raise RuntimeError(f"tensorrt: set_tensor_address refused {n!r}")
    return buffers


def launch(context, device) -> float:
    """execute_async_v3 on the device's stream, checked (it returns False on failure); its device ms."""
    ok = []
    ms = device.timed(lambda: ok.append(context.execute_async_v3(device.handle)))
    if not all(ok):
        raise RuntimeError("tensorrt: execute_async_v3 failed (see TensorRT's log above)")
    return ms


class TorchCuda:
    """Device buffers, stream and events through torch's CUDA (the engine only sees raw addresses)."""

    def __init__(self):
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.name = torch.cuda.get_device_name(0)

    @property
    def handle(self) -> int:
        return self.stream.cuda_stream

    def upload(self, x: np.ndarray):
        with self.torch.cuda.stream(self.stream):  # allocated for, and copied on, the engine's stream
            t = self.torch.from_numpy(x).to("cuda", non_blocking=False)
        self.stream.synchronize()
        return t, t.data_ptr()

    def empty(self, shape):
        with self.torch.cuda.stream(self.stream):
            t = self.torch.empty(tuple(shape), dtype=self.torch.float32, device="cuda")
        return t, t.data_ptr()

    def download(self, buf) -> np.ndarray:
        with self.torch.cuda.stream(self.stream):
            return buf.cpu().numpy()

    def timed(self, launch) -> float:
        """Run ``launch`` on the stream; its device time in ms, after the stream has finished."""
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(self.stream):
            start.record(self.stream)
            launch()
            end.record(self.stream)
        self.stream.synchronize()
        return start.elapsed_time(end)


class TrtSession(Session):
    timing = ("execute_async_v3 until the stream finished; upload and download outside the timer "
              "(device_ms: CUDA events around the launch)")

    def __init__(self, spec, engine_path, precision, io=None, execution=None, trt=None, device=None):
        self.trt = trt = trt or load("tensorrt", INSTALL)
        self.device = device or TorchCuda()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{engine_path}: TensorRT could not deserialize the engine (built by another version?)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"{engine_path}: TensorRT could not create an execution context (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        super().__init__(spec, SessionInfo("tensorrt", precision, execution or precision,
                                           {"engine": str(engine_path), "gpu": self.device.name}), io)
        missing = [n for n in self.io.engine_outputs if n not in self.outputs]
        # a supplied engine's interface check reports every difference at once; a run must not guess
        self.problem = f"{engine_path}: no outputs {missing}; the engine has {self.outputs}" if missing else None
        self.device_ms = []

    def signature(self):
        def dims(name):
            return [d if d >= 0 else None for d in self.engine.get_tensor_shape(name)]
        return {n: dims(n) for n in self.inputs}, {n: dims(n) for n in self.outputs}

    def _profile(self, name) -> str:
        try:
            low, opt, high = self.engine.get_tensor_profile_shape(name, 0)
            return f"profile 0 spans {tuple(low)}..{tuple(high)} (opt {tuple(opt)})"
        except Exception as e:  # noqa: BLE001 - only for the message
            return f"profile unreadable: {e}"

    def _stage(self, x):
        if self.problem:
            raise ValueError(self.problem)
        return bind(self.context, {self.io.input: x}, self.outputs, self.device, self._profile)

    def _run(self, buffers):
        self.device_ms.append(launch(self.context, self.device))
        return buffers

    def run_feeds(self, feeds: dict) -> dict:
        """One run on several named inputs (a reduced subgraph's): {output: host array} for every output."""
        missing = sorted(set(self.inputs) ^ set(feeds))
        if missing:
            raise ValueError(f"tensorrt: engine inputs {self.inputs}, feeds {list(feeds)}: {missing} unmatched")
        buffers = bind(self.context, {n: np.ascontiguousarray(feeds[n]) for n in self.inputs}, self.outputs,
                       self.device, self._profile)
        self.device_ms.append(launch(self.context, self.device))
        return {n: self.device.download(buffers[n][0]) for n in self.outputs}

    def _fetch(self, buffers):
        return [self.device.download(buffers[n][0]) for n in self.io.engine_outputs]

    def close(self):
        self.context = self.engine = None


class TensorRtBackend(Backend):
    name = "tensorrt"
    # the "tensorrt" meta package installs tensorrt-cu12 / tensorrt-cu13; a wheel may come alone
    distributions = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")
    precisions = ("fp32", "fp16")
    reduced = ("fp16",)
    artifact_suffixes = (".engine", ".plan")

    def unavailable_reason(self):
        missing = reason("tensorrt", INSTALL, verb="is not installed")
        if missing:
            return missing
        gpu, why = cuda_device()
        if not gpu:
            return why
        if not torch.cuda.is_available():
            return "torch has no CUDA here: TensorRT sessions keep their buffers in torch CUDA tensors"
        return None

    def version(self):
        return load("tensorrt", INSTALL).__version__

    def probe(self, pipeline, spec, path, io, precision):
        source = device_source(self, pipeline, spec, path)
        return TrtProbe(source, io, precision, spec, session=TrtSession,
                        build=lambda *a, **k: build_engine(load("tensorrt", INSTALL), *a, **k))

    def write_advice(self, keep, folder, modules, ir=None):
        return write_advice(keep, folder, modules)

    def device(self):
        return seed_device_name(cuda_device()[0])

    def artifact_settings(self, precision, spec=None):
        # an engine is specific to the GPU model it was built on; "tf32": False since TF32 was cleared
        return {**super().artifact_settings(precision, spec), "gpu": cuda_device()[0], "tf32": False}

    def convert(self, source, out_dir, precision, shape):
        trt = load("tensorrt", INSTALL)
        spec = source.spec
        built = build_engine(trt, source.onnx_path(self.opset), out_dir / "model.engine", spec.input_name,
                             precision, shape_range(spec))
        (out_dir / "profile.txt").write_text(f"{built}\n")

    def load(self, artifact_dir, source, precision):
        # built here with TF32 cleared: fp32 is IEEE fp32; fp16 engines keep fp32 layers in fp32 too
        return TrtSession(source.spec, artifact_dir / "model.engine", precision,
                          execution="f32" if precision == "fp32" else "f16")

    def run_subgraph(self, onnx_path, feeds, precision, workdir, device=None):
        """One profile with each feed's exact shape as min, opt and max; the engine built as convert builds
        (TF32 cleared, FP16 flag for fp16), run through the session's own binding. ``device``: the buffers'
        home (TorchCuda; the plumbing tests' HostBuffers)."""
        trt = load("tensorrt", INSTALL)
        engine = Path(workdir) / "model.engine"
        build_engine_for(trt, onnx_path, engine, precision, {n: (a.shape,) * 3 for n, a in feeds.items()})
        session = TrtSession(None, engine, precision, trt=trt, device=device, io=SUBGRAPH_IO)
        try:
            return session.run_feeds(dict(feeds))
        finally:
            session.close()

    def subgraph_call(self, precision, feeds):
        # trtexec's --noTF32 as build_engine clears BuilderFlag.TF32; --shapes as the feeds' own (one profile)
        shapes = ",".join(f"{n}:{'x'.join(str(d) for d in a.shape)}" for n, a in feeds.items())
        return {"command": ["trtexec", "--onnx=model.onnx", *(["--fp16"] if precision == "fp16" else []), "--noTF32",
                            f"--shapes={shapes}", "--saveEngine=model.engine"]}

    def open(self, path, spec, precision, io):
        # a supplied engine's builder flags are not readable back: TF32 may have been left on
        return TrtSession(spec, path, precision, io, execution=f"{precision} as supplied (TF32 unknown)")
