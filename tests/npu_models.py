"""Test helper: "compile" the demo model's image encoder the way NPU toolchains do.

Pulsar2 (AXERA's compiler) bakes the batch size into the model and usually
moves the normalisation into it, so the NPU takes raw uint8 pixels in NHWC
(often in BGR order). This helper does the same surgery on an ONNX graph with
the ``onnx`` package: a fixed batch, an input in the requested layout, dtype
and channel order, and — for uint8 — cast, channel reorder and mean/std
inside the graph. The result is saved as ``.axmodel`` for the fake
``axengine`` (tests/fakes/axengine) or as ``.onnx`` for ONNX Runtime, so the
same contract can be run on both backends and compared.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

FAKES = Path(__file__).resolve().parent / "fakes"


def use_fake_axengine() -> None:
    """Make ``import axengine`` find the fake (for in-process tests)."""
    if str(FAKES) not in sys.path:
        sys.path.insert(0, str(FAKES))


def compile_image_encoder(src: Path, dst: Path, *, batch: int | None, layout: str = "NCHW",
                          dtype: str = "float32", channel_order: str = "RGB",
                          mean: tuple[float, ...] = (0.0, 0.0, 0.0), std: tuple[float, ...] = (1.0, 1.0, 1.0)) -> Path:
    """Write src (float32 NCHW RGB, dynamic batch) as a model taking the given input contract."""
    model = onnx.load(str(src))
    graph = model.graph
    original = graph.input[0]
    name = original.name
    size = original.type.tensor_type.shape.dim[2].dim_value
    inner = name + "__normalised"
    for node in graph.node:
        node.input[:] = [inner if i == name else i for i in node.input]
    nodes, current = [], name

    def step(op: str, *extra_inputs: str, **attrs) -> None:
        nonlocal current
        out = f"{name}__{op.lower()}{len(nodes)}"
        nodes.append(helper.make_node(op, [current, *extra_inputs], [out], **attrs))
        current = out

    if dtype == "uint8":
        step("Cast", to=TensorProto.FLOAT)
    if layout == "NHWC":
        step("Transpose", perm=[0, 3, 1, 2])
    if channel_order == "BGR":
        graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), name + "__bgr"))
        step("Gather", name + "__bgr", axis=1)
    if dtype == "uint8":
        scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(1, 3, 1, 1).astype(np.float32)
        offset = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(1, 3, 1, 1)
        graph.initializer.extend([numpy_helper.from_array(scale, name + "__scale"),
                                  numpy_helper.from_array(offset.astype(np.float32), name + "__offset")])
        step("Mul", name + "__scale")
        step("Add", name + "__offset")
    nodes.append(helper.make_node("Identity", [current], [inner]))
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)

    dims = [batch if batch else "n"] + ([3, size, size] if layout == "NCHW" else [size, size, 3])
    elem = TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT
    graph.input.remove(original)
    graph.input.insert(0, helper.make_tensor_value_info(name, elem, dims))
    for output in graph.output:
        first = output.type.tensor_type.shape.dim[0]
        if batch:
            first.dim_value = batch
        else:
            first.dim_param = "n"
    del graph.value_info[:]  # stale shapes from the dynamic-batch graph
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def npu_model_folder(demo: Path, dst: Path, *, layout: str, dtype: str, channel_order: str = "RGB",
                     batch: int = 1, with_onnx: bool = True) -> Path:
    """A copy of the demo model folder with the given image input contract.

    It holds image.axmodel (compiled for ``batch``) and, with ``with_onnx``,
    an image.onnx with the same input contract and a dynamic batch: one
    manifest serves both backends, exactly as a shipped NPU model does.
    """
    manifest = yaml.safe_load((demo / "model.yaml").read_text())
    image = manifest["image"]
    mean = tuple(image.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(image.get("std", (0.26862954, 0.26130258, 0.27577711)))
    dst.mkdir(parents=True)
    for entry in demo.iterdir():
        if entry.name not in ("model.yaml", image["onnx"]) and entry.is_file():
            shutil.copy2(entry, dst / entry.name)
    if dtype == "float32" and (layout, channel_order) != ("NCHW", "RGB"):
        raise ValueError("a float32 input is normalised by nasclip; keep it NCHW RGB in tests")
    contract = dict(layout=layout, dtype=dtype, channel_order=channel_order, mean=mean, std=std)
    compile_image_encoder(demo / image["onnx"], dst / "image.axmodel", batch=batch, **contract)
    image["axmodel"] = "image.axmodel"
    if with_onnx:
        compile_image_encoder(demo / image["onnx"], dst / "image.onnx", batch=None, **contract)
        image["onnx"] = "image.onnx"
    else:
        image["onnx"] = None
    image.update(layout=layout, dtype=dtype, channel_order=channel_order)
    manifest["id"] = f"{manifest['id']}-npu-{layout.lower()}-{dtype}-{channel_order.lower()}"
    (dst / "model.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
    return dst
