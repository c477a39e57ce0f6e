"""`nasclip models export`: a small random CLIP checkpoint becomes a model nasclip runs like PyTorch.

The checkpoint is a transformers CLIPModel with a tiny config and random
weights, saved here with save_pretrained, plus a CLIP BPE tokenizer built
here (vocab.json + merges.txt, as OpenAI's checkpoints ship it). The folder
the export writes is loaded the way the daemon loads a model (Encoder.open)
and must give the PyTorch model's embeddings within 1e-4 — for photos
preprocessed by nasclip and for texts tokenized by nasclip on one side and by
transformers' own CLIPTokenizer on the other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_tokenizers import MERGES, VOCAB, WORDPIECE

from nasclip.cli.admin import main as admin_main
from nasclip.indexing.encoder import Encoder, l2_normalise
from nasclip.indexing.imaging import resize, to_tensor
from nasclip.model.reference import import_torch
from nasclip.model.spec import load_model_spec

torch = import_torch()  # the `test` extra installs torch==2.13.0, transformers and onnx
import transformers  # noqa: E402  (after import_torch, which makes torchvision importable)

IMAGE_SIZE = 32
TEXTS = ["a photo of a cat", "a red circle", "Dogs!", "photo " * 90]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-clip")
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, pad_token_id=0,
                         bos_token_id=VOCAB["<|startoftext|>"], eos_token_id=VOCAB["<|endoftext|>"]),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16)
    torch.manual_seed(1234)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(VOCAB))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in MERGES) + "\n")
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"shortest_edge": IMAGE_SIZE}, "do_center_crop": True,
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    return folder


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    assert admin_main(["models", "export", str(checkpoint), "--name", "tiny", "--models-dir", str(models)]) == 0
    return models / "tiny"


def test_export_writes_a_model_folder_with_the_clip_contract(exported: Path) -> None:
    spec = load_model_spec(exported)
    assert {p.name for p in exported.iterdir()} >= {"image.onnx", "text.onnx", "tokenizer.json", "model.yaml",
                                                     "SHA256SUMS", "install.yaml"}
    assert spec.embedding_dim == 16 and spec.image.size == IMAGE_SIZE and spec.image.resize == "crop"
    assert spec.text.context_length == 77 and spec.text.mask_name == "attention_mask"
    assert spec.id.startswith("tiny-")
    assert not any(p.name.startswith(".") for p in exported.parent.iterdir()), "no staging left behind"


def test_exported_model_matches_pytorch_within_1e4(exported: Path, checkpoint: Path) -> None:
    model = transformers.CLIPModel.from_pretrained(checkpoint).eval()
    spec = load_model_spec(exported)
    encoder = Encoder.open(spec, backend="onnx", threads=1)
    try:
        rng = np.random.default_rng(7)
        photos = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
                  [(48, 64), (40, 32), (32, 32)]]
        batch = np.stack([to_tensor(resize(photo, spec.image), spec.image) for photo in photos])
        got_images = encoder.encode_images(batch)
        got_texts = encoder.encode_texts(TEXTS)
    finally:
        encoder.close()
    reference = transformers.CLIPTokenizer(str(checkpoint / "vocab.json"), str(checkpoint / "merges.txt"))
    tokens = reference(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        image_out = model.get_image_features(pixel_values=torch.from_numpy(batch))
        text_out = model.get_text_features(**tokens)
    want_images = getattr(image_out, "pooler_output", image_out).numpy()
    want_texts = getattr(text_out, "pooler_output", text_out).numpy()
    assert np.abs(got_images - l2_normalise(want_images)).max() < 1e-4
    assert np.abs(got_texts - l2_normalise(want_texts)).max() < 1e-4
    # The comparison must be able to fail: different texts give clearly different vectors.
    assert np.abs(got_texts[0] - got_texts[1]).max() > 1e-2


def test_chinese_clip_checkpoint_exports_with_wordpiece_and_its_attention_mask(tmp_path: Path) -> None:
    """ChineseCLIPModel: BERT text tower (bidirectional, so the mask matters; dropout in its config)."""
    config = transformers.ChineseCLIPConfig(
        text_config=dict(vocab_size=len(WORDPIECE), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16)
    torch.manual_seed(99)
    transformers.ChineseCLIPModel(config).save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "vocab.txt").write_text("\n".join(WORDPIECE) + "\n", encoding="utf-8")
    assert admin_main(["models", "export", str(tmp_path / "ckpt"), "--name", "cn",
                       "--models-dir", str(tmp_path / "models")]) == 0
    spec = load_model_spec(tmp_path / "models" / "cn")
    assert spec.text.context_length == 52 and spec.image.resize == "squash" and spec.languages == ("zh",)
    texts = ["金色头发的小姐姐", "黄色背景上的蓝色正方形", "red circle"]
    encoder = Encoder.open(spec, backend="onnx", threads=1)
    try:
        got = encoder.encode_texts(texts)
    finally:
        encoder.close()
    model = transformers.ChineseCLIPModel.from_pretrained(tmp_path / "ckpt").eval()
    reference = transformers.BertTokenizer(str(tmp_path / "ckpt" / "vocab.txt"))
    tokens = reference(texts, padding="max_length", max_length=52, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    assert np.abs(got - l2_normalise(getattr(out, "pooler_output", out).numpy())).max() < 1e-4


def test_export_refuses_what_it_cannot_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert admin_main(["models", "export", str(tmp_path / "ckpt"), "--models-dir", str(tmp_path / "m")]) != 0
    assert "model_type 'bert' is not a CLIP model" in capsys.readouterr().err
    assert admin_main(["models", "export", str(tmp_path), "--models-dir", str(tmp_path / "m")]) != 0
    assert "no config.json" in capsys.readouterr().err
