"""Exact graph rewrites that keep ONNX Runtime's CPU provider in its blocked (NCHWc) layout.

ONNX Runtime runs convolutions in a channel-blocked layout and converts tensors back to plain
NCHW (`ReorderOutput`) before any node it cannot run blocked. The converted model spells every
hard-swish of MobileNetV3 as `(x * k) * Clip(x + 3, 0, 6)`, and a scalar `Add`/`Mul` cannot run
blocked, so each one cost a pair of reorders: 52 `ReorderOutput` nodes, 19% of a run on the
2-core box (ORT's profiler, `session.enable_profiling`).

Rewrites, each the same arithmetic, only grouped differently:
  - hard-swish: `(x * k) * Clip(x + 3, 0, 6)` becomes `x * Clip(DepthwiseConv1x1(x; w=k, b=3k),
    0, 6k)`. A depthwise 1x1 convolution runs blocked and takes the Clip as its fused activation,
    and a `Mul` of two same-shape blocked tensors runs blocked too.
  - identity `Reshape` (a constant target shape equal to the input's inferred static shape, as in
    the squeeze-excite blocks): removed.
"""
import collections

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference


def rewrite(model: onnx.ModelProto) -> dict:
    """Rewrites `model` in place; returns how many of each rewrite were made."""
    counts = {"hard_swish": _hard_swish(model.graph), "identity_reshape": _identity_reshapes(model)}
    _drop_unused_initializers(model.graph)
    return counts


def _scalar(inits: dict, name: str):
    value = inits.get(name)
    return float(value.ravel()[0]) if value is not None and value.size == 1 else None


def _links(graph):
    consumers, producer = collections.defaultdict(list), {}
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
        for name in node.output:
            producer[name] = node
    return consumers, producer


def _hard_swish(graph) -> int:
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers, producer = _links(graph)
    dropped, inserted, count = set(), {}, 0
    for add in graph.node:
        if add.op_type != "Add" or _scalar(inits, add.input[1]) != 3.0:
            continue
        x = add.input[0]
        conv = producer.get(x)
        clips = consumers[add.output[0]]
        if conv is None or conv.op_type != "Conv" or len(clips) != 1:
            continue
        clip = clips[0]
        if clip.op_type != "Clip" or [_scalar(inits, n) for n in clip.input[1:]] != [0.0, 6.0]:
            continue
        muls = consumers[clip.output[0]]
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        mul = muls[0]
        (scaled,) = [n for n in mul.input if n != clip.output[0]]
        pre = producer.get(scaled)
        if pre is None or pre.op_type != "Mul" or x not in pre.input or len(consumers[scaled]) != 1:
            continue
        k = _scalar(inits, next(n for n in pre.input if n != x))
        if k is None:
            continue
        channels = inits[conv.input[1]].shape[0]
        names = {s: f"{x}/hard_swish_{s}" for s in ("w", "b", "lo", "hi", "dw", "gate")}
        graph.initializer.extend([
            numpy_helper.from_array(np.full((channels, 1, 1, 1), k, np.float32), names["w"]),
            numpy_helper.from_array(np.full((channels,), 3 * k, np.float32), names["b"]),
            numpy_helper.from_array(np.array(0, np.float32), names["lo"]),
            numpy_helper.from_array(np.array(6 * k, np.float32), names["hi"]),
        ])
        inserted[id(mul)] = [
            helper.make_node("Conv", [x, names["w"], names["b"]], [names["dw"]], name=names["dw"],
                             group=channels, kernel_shape=[1, 1]),
            helper.make_node("Clip", [names["dw"], names["lo"], names["hi"]], [names["gate"]], name=names["gate"]),
        ]
        mul.CopyFrom(helper.make_node("Mul", [x, names["gate"]], list(mul.output), name=mul.name))
        dropped |= {id(add), id(clip), id(pre)}
        count += 1
    _replace_nodes(graph, dropped, inserted)
    return count


def _identity_reshapes(model) -> int:
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    inferred = shape_inference.infer_shapes(model).graph.value_info
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in inferred}
    consumers, _ = _links(graph)
    dropped = set()
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        shape = shapes.get(node.input[0])
        if shape is None or None in shape or shape != inits[node.input[1]].tolist():
            continue
        if any(node.output[0] == o.name for o in graph.output):
            continue
        for user in consumers[node.output[0]]:
            for i, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[i] = node.input[0]
        dropped.add(id(node))
    _replace_nodes(graph, dropped, {})
    return len(dropped)


def _replace_nodes(graph, dropped: set, inserted: dict) -> None:
    """Drops nodes by id and puts `inserted[id(node)]` just before `node`, keeping topological order."""
    nodes = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        nodes.extend(inserted.get(id(node), []))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
