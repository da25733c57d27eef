#!/usr/bin/env python3
"""Make a dynamic-batch variant of centernet_mnv3_coco_512_u8.onnx, for the batching benchmark.

The shipped model was exported for batch 1: its reshapes carry a literal 1, and the output's
"batch gather" flattens the box-size map of a single image. This writes a copy whose input is
uint8 [N, 512, 512, 3] and output [N, 100, 6]:
  - reshapes whose target starts with a literal 1 copy the batch dimension instead (0), or
    infer it (-1) where the input is already flattened;
  - the box-size map is flattened to [N * 16384, 4] and each image's top-100 indices get the
    image's offset (n * 16384) before the gather;
and checks that a batch of three frames gives what three single runs give.

Usage: python3 models/make_dynamic_batch.py OUT.onnx  (needs onnx, onnxruntime, numpy; the
benchmark's venv, benches/baseline/setup.sh, has them)
"""
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SRC = pathlib.Path(__file__).resolve().parent / "centernet_mnv3_coco_512_u8.onnx"
CELLS = 128 * 128  # box-size map cells per image (512 / 4 squared)


def main(out: pathlib.Path) -> None:
    model = onnx.load(str(SRC))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}

    def set_init(name: str, values: np.ndarray) -> str:
        new = f"{name}_dynbatch"
        if new not in inits:
            tensor = numpy_helper.from_array(values.astype(np.int64), new)
            graph.initializer.append(tensor)
            inits[new] = tensor
        return new

    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]]).copy()
        if node.name == "tower_0/BatchGather/Reshape_2":
            assert list(shape) == [CELLS, 4], shape
            shape[0] = -1
        elif node.name == "tower_0/BatchGather/Reshape_3":
            assert list(shape) == [1, 100, 4], shape
            shape[0] = -1  # its input is [N * 100, 4]: the batch cannot be copied
        elif shape[0] == 1:
            shape[0] = 0  # copy the batch dimension from the input
        else:
            continue
        node.input[1] = set_init(node.input[1], shape)

    # Per-image offsets into the flattened map: Range(0, N) * CELLS, as [N, 1].
    (gather_add,) = [n for n in graph.node if n.name == "tower_0/BatchGather/add"]
    extra = [
        helper.make_node("Shape", ["images"], ["dyn_shape"]),
        helper.make_node("Constant", [], ["dyn_zero"], value=helper.make_tensor("z", TensorProto.INT64, [], [0])),
        helper.make_node("Gather", ["dyn_shape", "dyn_zero"], ["dyn_n"], axis=0),
        helper.make_node("Constant", [], ["dyn_one"], value=helper.make_tensor("o", TensorProto.INT64, [], [1])),
        helper.make_node("Range", ["dyn_zero", "dyn_n", "dyn_one"], ["dyn_range"]),
        helper.make_node("Constant", [], ["dyn_cells"], value=helper.make_tensor("c", TensorProto.INT64, [], [CELLS])),
        helper.make_node("Mul", ["dyn_range", "dyn_cells"], ["dyn_offsets_flat"]),
        helper.make_node("Constant", [], ["dyn_axis"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])),
        helper.make_node("Unsqueeze", ["dyn_offsets_flat", "dyn_axis"], ["dyn_offsets_i64"]),
    ]
    # The export computes the indices as int32.
    index_type = TensorProto.INT32
    extra.append(helper.make_node("Cast", ["dyn_offsets_i64"], ["dyn_offsets"], to=index_type))
    extra.append(helper.make_node("Add", [gather_add.output[0], "dyn_offsets"], ["dyn_indices"]))
    position = list(graph.node).index(gather_add) + 1
    for i, node in enumerate(extra):
        graph.node.insert(position + i, node)
    for node in graph.node:
        if node.name == "tower_0/BatchGather/Reshape_1":
            node.input[0] = "dyn_indices"

    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    single = ort.InferenceSession(str(SRC), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 255, (3, 512, 512, 3), dtype=np.uint8)
    batched = session.run(None, {"images": frames})[0]
    for i in range(3):
        alone = single.run(None, {"images": frames[i : i + 1]})[0]
        if not np.allclose(batched[i : i + 1], alone, atol=1e-4):
            sys.exit(f"{out}: image {i} of a batch differs from its single run")
    print(f"wrote {out}: batch of 3 == 3 single runs")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
