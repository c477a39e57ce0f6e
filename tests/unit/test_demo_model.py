"""Issue 3: the shipped demo model understands coloured shapes in English and Chinese.

The scenes come from tools/scenes.py, a generator separate from the training
script's (own code, seed, sizes, aspect ratios, JPEG qualities), and go
through nasclip's own loading, decoding and preprocessing.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL

from nasclip.errors import ModelError
from nasclip.indexing.encoder import Encoder
from nasclip.indexing.imaging import load_tensor
from nasclip.model.spec import load_model_spec
from tools.scenes import (
    CHINESE_COLOURS,
    CHINESE_SHAPES,
    PALETTE,
    SHAPES,
    balanced_scenes,
    jpeg_bytes,
    render,
)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """200 fresh scenes on disk, encoded through nasclip; (scenes, vectors, encoder)."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = random.Random(31337)
    scenes = balanced_scenes(200, rng)
    spec = load_model_spec(DEMO_MODEL)
    tensors = []
    for i, scene in enumerate(scenes):
        path = folder / f"{i:03d}.jpg"
        path.write_bytes(jpeg_bytes(render(scene, rng), rng))
        tensors.append(load_tensor(path, spec.image, max_pixels=50_000_000))
    encoder = Encoder.open(spec, backend="onnx", threads=2)
    vectors = encoder.encode_images(np.stack(tensors))
    yield scenes, vectors, encoder
    encoder.close()


def precision_at_5(scenes, vectors, query_vector, colour, shape) -> float:
    top = np.argsort(-(vectors @ query_vector))[:5]
    return sum(scenes[i].colour == colour and scenes[i].shape == shape for i in top) / 5


@pytest.mark.parametrize("language", ["english", "chinese"])
def test_precision_at_5_over_all_32_queries(encoded, language) -> None:
    scenes, vectors, encoder = encoded
    combos = [(c, s) for c in PALETTE for s in SHAPES]
    texts = [f"a {c} {s}" if language == "english" else f"{CHINESE_COLOURS[c]}的{CHINESE_SHAPES[s]}"
             for c, s in combos]
    queries = encoder.encode_texts(texts)
    scores = [precision_at_5(scenes, vectors, q, c, s) for q, (c, s) in zip(queries, combos)]
    mean = float(np.mean(scores))
    worst = sorted(zip(scores, texts))[:3]
    print(f"{language}: mean precision@5 = {mean:.3f}; worst: {worst}")
    assert mean >= 0.9, f"mean precision@5 {mean:.3f}; worst queries {worst}"


# Traditional script, written out here (not by OpenCC, which the model's
# normalize step uses): 紅 綠 藍 黃 圓 differ from the simplified forms.
TRADITIONAL_COLOURS = {"red": "紅色", "green": "綠色", "blue": "藍色", "yellow": "黃色", "orange": "橙色",
                       "purple": "紫色", "white": "白色", "black": "黑色"}
TRADITIONAL_SHAPES = {"circle": "圓形", "square": "正方形", "triangle": "三角形", "star": "星形"}


def test_traditional_queries_find_what_simplified_ones_find(encoded) -> None:
    scenes, vectors, encoder = encoded
    combos = [(c, s) for c in PALETTE for s in SHAPES]
    simplified = [f"{CHINESE_COLOURS[c]}的{CHINESE_SHAPES[s]}" for c, s in combos]
    traditional = [f"{TRADITIONAL_COLOURS[c]}的{TRADITIONAL_SHAPES[s]}" for c, s in combos]
    assert sum(a != b for a, b in zip(simplified, traditional)) >= 20
    means = []
    for texts in (simplified, traditional):
        queries = encoder.encode_texts(texts)
        means.append(float(np.mean([precision_at_5(scenes, vectors, q, c, s) for q, (c, s) in zip(queries, combos)])))
    print(f"precision@5: simplified {means[0]:.3f}, traditional {means[1]:.3f}")
    assert abs(means[0] - means[1]) <= 0.05 and means[1] >= 0.9
    # The seed's own kind of query: one vector for both scripts.
    both = encoder.encode_texts(["紅色的圓形", "红色的圆形"])
    assert float(both[0] @ both[1]) >= 0.999


def test_other_phrasings_and_backgrounds(encoded) -> None:
    scenes, vectors, encoder = encoded
    on_yellow = [i for i, s in enumerate(scenes) if s.background == "yellow"]
    assert on_yellow, "the fixture should contain scenes on yellow"
    for text in ("a photo of a blue square on a yellow background", "黄色背景上的蓝色正方形"):
        query = encoder.encode_texts([text])[0]
        best = int(np.argmax(vectors @ query))
        assert (scenes[best].colour, scenes[best].shape) == ("blue", "square"), text
    for text, (colour, shape) in {"green triangle": ("green", "triangle"), "绿色三角形": ("green", "triangle"),
                                  "an orange star": ("orange", "star")}.items():
        query = encoder.encode_texts([text])[0]
        assert precision_at_5(scenes, vectors, query, colour, shape) >= 0.8, text


def test_embeddings_are_unit_length_and_deterministic(encoded) -> None:
    _, vectors, encoder = encoded
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    once, twice = encoder.encode_texts(["a red circle"]), encoder.encode_texts(["a red circle"])
    assert np.array_equal(once, twice)


def copy_model(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, target)
    return target


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    model = copy_model(tmp_path)
    (model / "text.onnx").unlink()
    with pytest.raises(ModelError) as info:
        load_model_spec(model)
    message = str(info.value)
    assert str(model / "text.onnx") in message and "missing" in message
    assert "\n" not in message


def test_malformed_manifest_is_named(tmp_path: Path) -> None:
    model = copy_model(tmp_path)
    manifest = model / "model.yaml"
    manifest.write_text(manifest.read_text().replace("embedding_dim:", "embedding_dims:"))
    with pytest.raises(ModelError) as info:
        load_model_spec(model)
    assert str(manifest) in str(info.value) and "embedding_dims" in str(info.value)
    manifest.write_text("image: [unclosed\n")
    with pytest.raises(ModelError, match=f"{manifest}:.*not valid YAML"):
        load_model_spec(model)
    manifest.unlink()
    with pytest.raises(ModelError, match=f"{manifest}: missing"):
        load_model_spec(model)


def test_missing_model_folder_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist.*setting: model"):
        load_model_spec(tmp_path / "nope")


def test_a_model_that_is_not_onnx_fails_to_open_with_its_name(tmp_path: Path) -> None:
    model = copy_model(tmp_path)
    (model / "image.onnx").write_bytes(b"not a model")
    spec = load_model_spec(model)
    with pytest.raises(ModelError, match="image.onnx: ONNX Runtime cannot load it"):
        Encoder.open(spec, backend="onnx")
