"""Broken ports on purpose: graph surgery on an exported ONNX model with onnx.helper.

Each fault is what a real conversion gets wrong (a swapped channel order, a mis-folded BatchNorm, a
dropped dilation, a lowered activation, ...). A fault returns the broken model and the names of the
nodes it changed, so a test can check that localisation names one of them. The zoo in
tests/diagnosis/test_localize.py runs them all; a user can run one against their own pipeline the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class Injected:
    model: onnx.ModelProto
    nodes: tuple[str, ...]  # the nodes the fault changed or added
    note: str


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _inits(model) -> dict:
    return {i.name: i for i in model.graph.initializer}


def _set(model, name: str, array: np.ndarray) -> None:
    init = _inits(model)[name]
    init.CopyFrom(numpy_helper.from_array(array.astype(numpy_helper.to_array(init).dtype), name))


def _array(model, name: str) -> np.ndarray:
    return numpy_helper.to_array(_inits(model)[name])


def _convs(model) -> list:
    inits = _inits(model)
    return [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits]


def _attr(node, name):
    return next((a for a in node.attribute if a.name == name), None)


def _rewire(model, old: str, new: str, skip=()) -> None:
    """Every consumer of tensor ``old`` (but those in ``skip``) reads ``new`` instead."""
    for n in model.graph.node:
        if n.name in skip:
            continue
        for i, t in enumerate(n.input):
            if t == old:
                n.input[i] = new


def channel_swap(model, **_) -> Injected:
    """The port feeds RGB where the network wants BGR: the first convolution sees its channels reversed."""
    m = _copy(model)
    first = _convs(m)[0]
    _set(m, first.input[1], _array(m, first.input[1])[:, ::-1].copy())
    return Injected(m, (first.name,), "first convolution's input channels reversed")


def conv_scaled(model, factor: float = 1.03, **_) -> Injected:
    """A BatchNorm folded with the wrong variance: one convolution (weights and bias) 3 % too large."""
    m = _copy(model)
    conv = _convs(m)[len(_convs(m)) // 2]
    for name in conv.input[1:]:
        _set(m, name, _array(m, name) * factor)
    return Injected(m, (conv.name,), f"weights and bias of one convolution x{factor}")


def dilation_dropped(model, **_) -> Injected:
    m = _copy(model)
    conv = next(n for n in _convs(m) if _attr(n, "dilations") and any(d != 1 for d in _attr(n, "dilations").ints))
    kernel = _array(m, conv.input[1]).shape[2:]
    _attr(conv, "dilations").ints[:] = [1] * len(kernel)
    pads = _attr(conv, "pads")
    if pads is not None:  # the port kept the output size, as converters do
        pads.ints[:] = [k // 2 for k in kernel] * 2
    return Injected(m, (conv.name,), "a dilated convolution run undilated")


def elu_to_relu(model, **_) -> Injected:
    m = _copy(model)
    node = next(n for n in m.graph.node if n.op_type == "Elu")
    node.op_type = "Relu"
    del node.attribute[:]
    return Injected(m, (node.name,), "ELU lowered to ReLU")


def relu_to_relu6(model, ranges: dict | None = None, **_) -> Injected:
    """ReLU fused as ReLU6 (Clip 0..6): visible where activations exceed 6, so the widest ReLU is chosen."""
    m = _copy(model)
    relus = [n for n in m.graph.node if n.op_type == "Relu"]
    node = max(relus, key=lambda n: (ranges or {}).get(n.output[0], 0.0)) if ranges else relus[0]
    node.op_type = "Clip"
    lo, hi = f"{node.name}/relu6_min", f"{node.name}/relu6_max"
    m.graph.initializer.extend([numpy_helper.from_array(np.array(0, np.float32), lo),
                                numpy_helper.from_array(np.array(6, np.float32), hi)])
    node.input.extend([lo, hi])
    return Injected(m, (node.name,), "ReLU fused as ReLU6 (Clip 0..6)")


def fp16_weights(model, **_) -> Injected:
    """Every floating-point weight rounded to fp16 (the error is everywhere; the first convolution shows it)."""
    m = _copy(model)
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(a.astype(np.float16).astype(np.float32), init.name))
    return Injected(m, tuple(n.name for n in _convs(m)), "every weight rounded to fp16")


def stage1_as_outputs(model, pairs: dict | None = None, **_) -> Injected:
    """The last stage's output names carry the first stage's maps (a wrong --out_nodes)."""
    m = _copy(model)
    outputs = [o.name for o in m.graph.output]
    pairs = pairs or {o: outputs[i] for i, o in enumerate(outputs[len(outputs) // 2:])}
    added = []
    for final, early in pairs.items():
        hidden = f"{final}_not_exposed"
        for n in m.graph.node:
            n.output[:] = [hidden if t == final else t for t in n.output]
        _rewire(m, final, hidden)
        name = f"/exposed/Identity_{final}"
        m.graph.node.append(helper.make_node("Identity", [early], [final], name=name))
        added.append(name)
    return Injected(m, tuple(added), f"outputs {list(pairs)} carry {list(pairs.values())}")


def head_bias(model, output: str | None = None, offset: float = 0.01, **_) -> Injected:
    m = _copy(model)
    output = output or m.graph.output[len(m.graph.output) // 2].name
    conv = next(n for n in m.graph.node if output in n.output)
    _set(m, conv.input[2], _array(m, conv.input[2]) + offset)
    return Injected(m, (conv.name,), f"bias of the head producing {output} + {offset}")


def fp16_overflow(model, ranges: dict | None = None, **_) -> Injected:
    """One activation stored in fp16 after a scale (as a converter's per-layer scaling does): the values
    beyond 65504 become Inf. The widest non-output activation is chosen, the scale set to overflow it."""
    m = _copy(model)
    outputs = {o.name for o in m.graph.output}
    candidates = [n for n in m.graph.node if n.op_type in ("Relu", "Elu", "Conv", "Add") and n.output[0] not in outputs]
    node = max(candidates, key=lambda n: (ranges or {}).get(n.output[0], 0.0))
    peak = (ranges or {}).get(node.output[0], 1.0) or 1.0
    k = float(2 ** math.ceil(math.log2(4 * 65504 / peak)))  # a power of two: exact in fp32
    scope = node.name.rsplit("/", 1)[0]
    t = node.output[0]
    names = [f"{scope}/Fp16Store_Mul", f"{scope}/Fp16Store_Cast", f"{scope}/Fp16Load_Cast", f"{scope}/Fp16Load_Mul"]
    m.graph.initializer.extend([numpy_helper.from_array(np.array(k, np.float32), f"{scope}/fp16_scale"),
                                numpy_helper.from_array(np.array(1 / k, np.float32), f"{scope}/fp16_unscale")])
    new = [helper.make_node("Mul", [t, f"{scope}/fp16_scale"], [f"{t}_scaled"], name=names[0]),
           helper.make_node("Cast", [f"{t}_scaled"], [f"{t}_fp16"], name=names[1], to=onnx.TensorProto.FLOAT16),
           helper.make_node("Cast", [f"{t}_fp16"], [f"{t}_fp32"], name=names[2], to=onnx.TensorProto.FLOAT),
           helper.make_node("Mul", [f"{t}_fp32", f"{scope}/fp16_unscale"], [f"{t}_stored"], name=names[3])]
    _rewire(m, t, f"{t}_stored")
    at = list(m.graph.node).index(node) + 1
    for i, n in enumerate(new):
        m.graph.node.insert(at + i, n)
    return Injected(m, tuple(names), f"{t} scaled x{k:g} and stored in fp16 (peak {peak:.3g})")


def resize_mode(model, **_) -> Injected:
    """Nearest-neighbour upsampling converted as linear."""
    m = _copy(model)
    node = next(n for n in m.graph.node if n.op_type == "Resize" and _attr(n, "mode").s == b"nearest")
    _attr(node, "mode").s = b"linear"
    keep = [a for a in node.attribute if a.name != "nearest_mode"]
    del node.attribute[:]
    node.attribute.extend(keep)
    return Injected(m, (node.name,), "nearest upsampling run as linear")


FAULTS: dict[str, Callable[..., Injected]] = {
    "channel-swap": channel_swap, "conv-scaled-3pct": conv_scaled, "dilation-dropped": dilation_dropped,
    "elu-as-relu": elu_to_relu, "relu-as-relu6": relu_to_relu6, "weights-fp16": fp16_weights,
    "stage1-as-outputs": stage1_as_outputs, "head-bias-0.01": head_bias, "fp16-overflow": fp16_overflow,
    "resize-mode": resize_mode,
}

def rounded_away(model, ranges: dict | None = None, node: str | None = None, **_) -> Injected:
    """Not a conversion bug: a model fp32 computes right and 16-bit formats do not. One convolution's bias
    carries an offset a following Add takes off again (exact in fp32); in fp16 or bf16 the offset's
    rounding step exceeds the convolution's whole signal, which is rounded away. The convolution with
    the middle of the network is chosen, or ``node`` (``ranges``: tensor -> max |value|, its peak)."""
    m = _copy(model)
    convs = [n for n in _convs(m) if len(n.input) > 2]
    conv = next(n for n in convs if n.name == node) if node else convs[len(convs) // 2]
    peak = (ranges or {}).get(conv.output[0], 1.0) or 1.0
    # 2^8 x the peak: bf16's step there (7 mantissa bits) is twice the peak, fp32's 2^-15 of it
    offset = float(2 ** (math.ceil(math.log2(peak)) + 8))
    _set(m, conv.input[2], _array(m, conv.input[2]) + offset)
    t = conv.output[0]
    scope = conv.name.rsplit("/", 1)[0]
    names = (f"{scope}/Offset_Relu", f"{scope}/Offset_Sub")
    m.graph.initializer.append(numpy_helper.from_array(np.array(offset, np.float32), f"{scope}/offset"))
    _rewire(m, t, f"{t}_offset_removed")
    at = list(m.graph.node).index(conv) + 1
    # the ReLU is the identity on conv + offset (offset >> peak) and keeps a converter from folding the Sub
    # into the bias, which OpenVINO does (measured: AP unchanged without it)
    m.graph.node.insert(at, helper.make_node("Relu", [t], [f"{t}_offset"], name=names[0]))
    m.graph.node.insert(at + 1, helper.make_node("Sub", [f"{t}_offset", f"{scope}/offset"], [f"{t}_offset_removed"],
                                                 name=names[1]))
    return Injected(m, (conv.name, *names), f"{t} offset by {offset:g} and back (peak {peak:.3g})")


# faults of reduced precision only: fp32 runs them right (not in the fp32 zoo)
PRECISION_FAULTS: dict[str, Callable[..., Injected]] = {"rounded-away-in-16-bit": rounded_away}



def reshape_baked_width(model, input_dims: tuple | None = None, **_) -> Injected:
    """A Reshape whose target shape was baked at the export's static size (a port traced at 368x640 keeps
    ``view(n, c, h, 80)``): any other width cannot be reshaped to it, a shape error at that node. Inserted
    after the middle convolution, a no-op at ``input_dims`` (default: batch 1, every other free dim 640)."""
    m = _copy(model)
    inp = m.graph.input[0]
    dims = input_dims or tuple(d.dim_value if d.HasField("dim_value") else 1 if i == 0 else 640
                               for i, d in enumerate(inp.type.tensor_type.shape.dim))
    static = _copy(m)
    for d, n in zip(static.graph.input[0].type.tensor_type.shape.dim, dims):
        d.Clear()
        d.dim_value = int(n)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(static).graph.value_info}
    conv = next(n for n in _convs(m)[len(_convs(m)) // 2:] if len(shapes.get(n.output[0], [])) == 4)
    t = conv.output[0]
    scope = conv.name.rsplit("/", 1)[0]
    name, target = f"{scope}/BakedWidth_Reshape", f"{scope}/baked_shape"
    m.graph.initializer.append(numpy_helper.from_array(np.array([-1, *shapes[t][1:]], np.int64), target))
    _rewire(m, t, f"{t}_baked")
    m.graph.node.insert(list(m.graph.node).index(conv) + 1,
                        helper.make_node("Reshape", [t, target], [f"{t}_baked"], name=name))
    return Injected(m, (name,), f"{t} reshaped to {[-1, *shapes[t][1:]]}, its shape at input {list(dims)}")


# faults that break the graph's shapes: the backend raises instead of computing (reduced by the error it raises)
SHAPE_FAULTS: dict[str, Callable[..., Injected]] = {"reshape-baked-width": reshape_baked_width}
