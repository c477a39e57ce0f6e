"""`nasclip models quantize`: an int8 copy of the demo model's image encoder as a new model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from conftest import DEMO_MODEL, make_scenes

from nasclip.cli import admin
from nasclip.indexing.encoder import Encoder
from nasclip.indexing.imaging import load_tensor
from nasclip.model.spec import load_model_spec


def vectors(folder: Path, photos: list[Path]) -> np.ndarray:
    encoder = Encoder.open(load_model_spec(folder), backend="onnx", threads=1, text=False)
    return encoder.encode_images(np.stack([load_tensor(p, encoder.spec.image, 10**8) for p in photos]))


def test_quantize_writes_an_int8_model_with_its_own_id(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo-int8"
    assert admin.main(["models", "quantize", str(DEMO_MODEL), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    original, copy = load_model_spec(DEMO_MODEL), load_model_spec(out)
    assert copy.id == f"{original.id}-int8" and "int8" in copy.name
    assert f"wrote model {copy.id} to {out}" in printed and "mean cosine similarity" in printed
    # Same input contract and text side; only the image encoder changed.
    assert copy.image.size == original.image.size and copy.image.resize == original.image.resize
    assert (copy.image.mean, copy.image.std, copy.image.layout) == (original.image.mean, original.image.std,
                                                                    original.image.layout)
    assert copy.embedding_dim == original.embedding_dim and copy.image.axmodel is None
    for name in (original.text.onnx, original.text.tokenizer):
        assert (out / name).read_bytes() == (DEMO_MODEL / name).read_bytes()
    ops = {node.op_type for node in onnx.load(str(out / "image.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}, ops
    weights = onnx.load(str(out / "image.onnx")).graph.initializer
    assert any(w.data_type == onnx.TensorProto.INT8 for w in weights), "weights stored as int8"
    # Its vectors are close to the original's, but not the same model.
    photos = sorted(make_scenes(tmp_path / "photos", 6, seed=3))
    before, after = vectors(DEMO_MODEL, photos), vectors(out, photos)
    cosine = np.sum(before * after, axis=1)
    assert cosine.mean() > 0.98, cosine
    assert not np.array_equal(before, after)
    assert not list(tmp_path.glob(".demo-int8.partial-*"))
    # It carries its own checksums, so `nasclip models verify` can check it later.
    assert admin.main(["models", "verify", "--models-dir", str(tmp_path), "demo-int8"]) == 0
    (out / "image.onnx").write_bytes((out / "image.onnx").read_bytes() + b"\0")
    assert admin.main(["models", "verify", "--models-dir", str(tmp_path), "demo-int8"]) == 1


def test_an_installed_model_can_be_named_instead_of_a_folder(tmp_path: Path, capsys) -> None:
    shutil.copytree(DEMO_MODEL, tmp_path / "demo", symlinks=False)
    assert admin.main(["models", "quantize", "--models-dir", str(tmp_path), "demo"]) == 0
    printed = capsys.readouterr().out
    assert f"model: {tmp_path / 'demo-int8'}" in printed
    assert load_model_spec(tmp_path / "demo-int8").id.endswith("-int8")


def test_quantize_refuses_clearly_and_leaves_nothing_half_written(tmp_path: Path, capsys) -> None:
    out = tmp_path / "q"
    out.mkdir()
    assert admin.main(["models", "quantize", str(DEMO_MODEL), "--out", str(out)]) == 78
    assert "already exists" in capsys.readouterr().err
    spec = load_model_spec(DEMO_MODEL)
    assert admin.main(["models", "quantize", str(DEMO_MODEL), "--out", str(tmp_path / "x"), "--id", spec.id]) == 78
    assert "needs its own id" in capsys.readouterr().err
    assert admin.main(["models", "quantize", str(tmp_path / "nowhere")]) == 78
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(DEMO_MODEL, broken)
    (broken / spec.image.onnx).write_bytes(b"not an onnx model")
    assert admin.main(["models", "quantize", str(broken), "--id", "custom-id"]) == 78
    assert "quantisation failed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "q"], "no partial model left behind"
