"""NVIDIA TensorRT: engines built from the exported ONNX (fp32, fp16) with one optimisation profile
spanning every input profile, cached like any artifact; device buffers through torch's CUDA.

Timing synchronises the device: CUDA events around the engine call give the device compute time,
and run() returns only after the outputs are back on the host.
"""
from __future__ import annotations

from pathlib import Path

from posegate.backends.base import Backend, Session, SessionInfo
from posegate.backends.nvidia import cuda_device, seed_device_name, shape_range


class EngineBuildError(RuntimeError):
    pass


def build_engine(trt, onnx_path: Path, engine_path: Path, input_name: str, precision: str, shapes,
                 workspace_bytes: int = 2 << 30) -> dict:
    """Parse, configure (precision, optimisation profile), build and write the serialized engine."""
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
    if precision == "fp16":
        if getattr(builder, "platform_has_fast_fp16", True) is False:
            raise EngineBuildError("this GPU has no fast fp16: TensorRT would build fp32 and call it fp16")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision != "fp32":
        raise EngineBuildError(f"no TensorRT build for precision {precision!r} (fp32, fp16)")
    low, opt, high = shapes
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT built no engine ({precision}, profile {low}..{high})")
    Path(engine_path).write_bytes(bytes(serialized))
    return {"min": list(low), "opt": list(opt), "max": list(high)}


class TrtSession(Session):
    def __init__(self, spec, engine_path, precision, io=None):
        import tensorrt as trt
        import torch
        self.torch = torch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{engine_path}: TensorRT could not deserialize the engine (built by another version?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        super().__init__(spec, SessionInfo("tensorrt", precision, precision,
                                           {"engine": str(engine_path), "gpu": torch.cuda.get_device_name(0)}), io)
        missing = [n for n in self.io.engine_outputs if n not in self.outputs]
        # a supplied engine's interface check reports every difference at once; a run must not guess
        self.problem = f"{engine_path}: no outputs {missing}; the engine has {self.outputs}" if missing else None
        self.device_ms = []

    def signature(self):
        def dims(name):
            return [d if d >= 0 else None for d in self.engine.get_tensor_shape(name)]
        return {n: dims(n) for n in self.inputs}, {n: dims(n) for n in self.outputs}

    def _run(self, x):
        if self.problem:
            raise ValueError(self.problem)
        torch = self.torch
        with torch.cuda.stream(self.stream):
            device_x = torch.from_numpy(x).cuda(non_blocking=False)
            self.context.set_input_shape(self.io.input, tuple(x.shape))
            self.context.set_tensor_address(self.io.input, device_x.data_ptr())
            outs = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                outs[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
                self.context.set_tensor_address(name, outs[name].data_ptr())
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(self.stream)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            end.record(self.stream)
            self.stream.synchronize()
        self.device_ms.append(start.elapsed_time(end))
        return [outs[n].cpu().numpy() for n in self.io.engine_outputs]

    def close(self):
        self.context = self.engine = None


def _unavailable(module: str, pip: str) -> str | None:
    try:
        __import__(module)
    except ImportError as e:
        return f"{module} is not installed ({e}); pip install -r requirements-nvidia.txt ({pip})"
    gpu, why = cuda_device()
    return None if gpu else why


class TensorRtBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16")

    def unavailable_reason(self):
        reason = _unavailable("tensorrt", "tensorrt")
        if reason is None:
            import torch
            if not torch.cuda.is_available():
                return "torch has no CUDA here: TensorRT sessions keep their buffers in torch CUDA tensors"
        return reason

    def version(self):
        import tensorrt
        return tensorrt.__version__

    def device(self):
        return seed_device_name(cuda_device()[0])

    def artifact_settings(self, precision):
        # an engine is specific to the GPU model it was built on
        return {**super().artifact_settings(precision), "gpu": cuda_device()[0]}

    def convert(self, source, out_dir, precision, shape):
        import tensorrt as trt
        spec = source.spec
        built = build_engine(trt, source.onnx_path(self.opset), out_dir / "model.engine", spec.input_name,
                             precision, shape_range(spec))
        (out_dir / "profile.txt").write_text(f"{built}\n")

    def load(self, artifact_dir, source, precision):
        return TrtSession(source.spec, artifact_dir / "model.engine", precision)

    def open(self, path, spec, precision, io):
        return TrtSession(spec, path, precision, io)
