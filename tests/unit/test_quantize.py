"""`nasclip models quantize`: an int8 copy of the demo model's image encoder as a new model folder."""

from __future__ import annotations

import re
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
    assert (out / original.text.tokenizer).read_bytes() == (DEMO_MODEL / original.text.tokenizer).read_bytes()
    assert copy.text.normalize == original.text.normalize and copy.text.trim == original.text.trim
    for name in ("image.onnx", "text.onnx"):  # both towers: the demo's int8 text keeps cosine >= 0.99
        ops = {node.op_type for node in onnx.load(str(out / name)).graph.node}
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}, (name, ops)
        weights = onnx.load(str(out / name)).graph.initializer
        assert any(w.data_type == onnx.TensorProto.INT8 for w in weights), f"{name}: weights stored as int8"
    line = next(line for line in printed.splitlines() if line.startswith("int8 text encoder:"))
    assert re.search(r"on 1000 texts: mean (0\.99\d\d|1\.0000), min (0\.99\d\d|1\.0000); .* ms per query", line), line
    texts = ["a red circle", "金色头发的小姐姐", "a photo of a green star on a white background"]
    before_text, after_text = (Encoder.open(load_model_spec(f), backend="onnx", image=False).encode_texts(texts)
                               for f in (DEMO_MODEL, out))
    assert np.sum(before_text * after_text, axis=1).min() >= 0.99 and not np.array_equal(before_text, after_text)
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


def test_the_text_encoder_stays_fp32_where_int8_would_move_its_vectors(tmp_path: Path, capsys, monkeypatch) -> None:
    from nasclip.model import quantize

    monkeypatch.setattr(quantize, "TEXT_MIN_COSINE", 1.01)  # no int8 encoder reaches it
    assert admin.main(["models", "quantize", str(DEMO_MODEL), "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "int8 text encoder not used (cosine to the original on 1000 texts" in printed
    assert (tmp_path / "a" / "text.onnx").read_bytes() == (DEMO_MODEL / "text.onnx").read_bytes()
    assert "Image encoder quantised" in load_model_spec(tmp_path / "a").description
    monkeypatch.undo()
    assert admin.main(["models", "quantize", str(DEMO_MODEL), "--image-only", "--out", str(tmp_path / "b")]) == 0
    assert "int8 text encoder" not in capsys.readouterr().out
    assert (tmp_path / "b" / "text.onnx").read_bytes() == (DEMO_MODEL / "text.onnx").read_bytes()


def test_text_only_keeps_the_image_encoder_and_the_model_id_so_nothing_is_encoded_again(
        tmp_path: Path, capsys) -> None:
    source = tmp_path / "demo"
    shutil.copytree(DEMO_MODEL, source)
    out = tmp_path / "demo-int8text"
    assert admin.main(["models", "quantize", str(source), "--text-only"]) == 0
    printed = capsys.readouterr().out
    original, copy = load_model_spec(source), load_model_spec(out)
    assert copy.id == original.id and "int8 text" in copy.name and "nothing" not in printed
    assert "the photos' vectors stay as they are" in printed
    assert (out / "image.onnx").read_bytes() == (source / "image.onnx").read_bytes()
    assert (out / "image.onnx").stat().st_ino == (source / "image.onnx").stat().st_ino, "linked, not copied"
    ops = {node.op_type for node in onnx.load(str(out / "text.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}, ops
    photos = sorted(make_scenes(tmp_path / "photos", 4, seed=5))
    assert np.array_equal(vectors(source, photos), vectors(out, photos)), "the same photo vectors, bit for bit"
    texts = ["a red circle", "金色头发的小姐姐"]
    before, after = (Encoder.open(load_model_spec(f), backend="onnx", image=False).encode_texts(texts)
                     for f in (source, out))
    assert np.sum(before * after, axis=1).min() >= 0.99
    assert admin.main(["models", "verify", "--models-dir", str(tmp_path), "demo-int8text"]) == 0
    # A new id would claim the vectors differ; they do not.
    assert admin.main(["models", "quantize", str(source), "--text-only", "--out", str(tmp_path / "x"),
                       "--id", "other"]) != 0
    assert "keeps the id" in capsys.readouterr().err
