#!/usr/bin/env python3
"""Make the shipped detector take uint8 NHWC frames, so capture buffers need no conversion.

Reads centernet_mnv3_coco_512.onnx (float32 input `tower_0/images:0`, raw 0-255 RGB NHWC) and
writes centernet_mnv3_coco_512_u8.onnx with:
  - a new graph input `images`, uint8 [1, 512, 512, 3], followed by a Cast to float32 that feeds
    the original input (the model expects raw 0-255 values, so nothing else changes);
  - only the `tower_0/detections` output ([1, 100, 6]: x1 y1 x2 y2 score class), renamed
    `detections`; the raw heat maps are dropped so ONNX Runtime neither computes nor copies them.

Usage: python3 models/make_u8_model.py  (needs `pip install onnx`; the output is committed)
"""
import hashlib
import pathlib

import onnx
from onnx import TensorProto, helper

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE / "centernet_mnv3_coco_512.onnx"
DST = HERE / "centernet_mnv3_coco_512_u8.onnx"
OLD_INPUT = "tower_0/images:0"
OLD_OUTPUT = "tower_0/detections"


def main() -> None:
    model = onnx.load(str(SRC))
    graph = model.graph
    (old_in,) = [i for i in graph.input if i.name == OLD_INPUT]
    dims = [d.dim_value for d in old_in.type.tensor_type.shape.dim]

    new_in = helper.make_tensor_value_info("images", TensorProto.UINT8, dims)
    cast = helper.make_node("Cast", ["images"], [OLD_INPUT], name="images_to_float", to=TensorProto.FLOAT)
    graph.input.remove(old_in)
    graph.input.insert(0, new_in)
    graph.node.insert(0, cast)

    (det,) = [o for o in graph.output if o.name == OLD_OUTPUT]
    identity = helper.make_node("Identity", [OLD_OUTPUT], ["detections"], name="detections_out")
    graph.node.append(identity)
    out_dims = [d.dim_value for d in det.type.tensor_type.shape.dim]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("detections", TensorProto.FLOAT, out_dims))

    onnx.checker.check_model(model)
    onnx.save(model, str(DST))
    digest = hashlib.sha256(DST.read_bytes()).hexdigest()
    print(f"wrote {DST.name} sha256 {digest}")


if __name__ == "__main__":
    main()
