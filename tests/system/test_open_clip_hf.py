"""The open_clip export of a model whose text tower is a transformers model: XLM-RoBERTa + ViT-B/32.

open_clip builds such a tower from the hub's config.json and tokenizer;
here they come from a folder (--tokenizer DIR), as a user who has the
files would give them. The folder is made by the test: an XLM-R
SentencePiece-Unigram tokenizer trained on the text corpus (the real one is
on the hub, which these machines cannot reach) saved by transformers' own
XLMRobertaTokenizer, and a small XLM-R config. The graph is open_clip's
(mean pooling over the non-pad tokens, pad id 1, MLP projection), and the
references are open_clip's: its HFTokenizer for the ids, its encode_text for
the vectors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from textcorpus import corpus

from nasclip.indexing.tokenizer import TextTokenizer
from nasclip.model.reference import import_torch, open_clip
from nasclip.model.spec import load_model_spec

torch = import_torch()
import transformers  # noqa: E402  (after import_torch, which makes torchvision importable)

oc = open_clip()
ARCH = "xlm-roberta-base-ViT-B-32"
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # XLM-R's ids 0-3; <mask> is the last id


@pytest.fixture(scope="module")
def text_tower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import SentencePieceUnigramTokenizer

    folder = tmp_path_factory.mktemp("xlm-roberta")
    trainer = SentencePieceUnigramTokenizer()
    trainer.train_from_iterator(corpus(3000, seed=5), vocab_size=3000, unk_token="<unk>", special_tokens=["<unk>"])
    pieces = [(p, s) for p, s in json.loads(trainer._tokenizer.to_str())["model"]["vocab"]
              if p not in SPECIALS + ("<mask>",)]
    tokenizer = transformers.XLMRobertaTokenizer(vocab=[(s, 0.0) for s in SPECIALS] + pieces + [("<mask>", 0.0)])
    tokenizer.save_pretrained(folder)
    transformers.XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, layer_norm_eps=1e-5).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference(text_tower: Path):
    text_cfg = {**oc.get_model_config(ARCH)["text_cfg"], "hf_model_name": str(text_tower),
                "hf_tokenizer_name": str(text_tower), "hf_model_pretrained": False}
    torch.manual_seed(72)
    return oc.create_model(ARCH, pretrained=None, text_cfg=text_cfg).eval()


@pytest.fixture(scope="module")
def exported(reference, text_tower: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import save_file

    base = tmp_path_factory.mktemp("xlmr-export")
    # The other form open_clip saves weights in (test_open_clip.py exports a .pt).
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, base / "weights.safetensors")
    done = subprocess.run([sys.executable, "-m", "nasclip.cli.admin", "models", "export", "--open-clip", ARCH,
                           "--weights", str(base / "weights.safetensors"), "--tokenizer", str(text_tower),
                           str(base / "out")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "ONNX Runtime matches PyTorch" in done.stderr + done.stdout
    return base / "out"


def test_the_manifest_says_pad_id_1(exported: Path) -> None:
    spec = load_model_spec(exported)
    # The tower pools over the tokens that are not its pad id (1): padding
    # with anything else would change every vector.
    assert spec.text.pad_id == 1 and spec.text.context_length == 77 and spec.text.normalize == ("clean",)
    assert spec.embedding_dim == 512 and spec.text.trim  # pads are masked by id: cutting them changes nothing


def test_token_ids_equal_open_clips_hf_tokenizer(exported: Path, text_tower: Path) -> None:
    texts = corpus(2400)
    ours, mask = TextTokenizer(load_model_spec(exported)).encode(texts)
    theirs = oc.tokenizer.HFTokenizer(str(text_tower), context_length=77)(texts).numpy()
    bad = [t for t, a, b in zip(texts, ours, theirs) if not np.array_equal(a, b)]
    assert bad[:5] == []
    # transformers matches "<pad>" typed in a text as the pad token, and so does
    # nasclip (ids equal); the model masks by id, so only the padding is compared.
    plain = [i for i, t in enumerate(texts) if "<pad>" not in t]
    assert np.array_equal(mask[plain], (theirs[plain] != 1).astype(mask.dtype))
    long = [i for i in range(len(texts)) if theirs[i, -1] != 1]
    assert len(long) > 50 and (ours[long, -1] == 2).all()  # truncation keeps </s> last


def test_text_vectors_equal_open_clips(exported: Path, reference, text_tower: Path) -> None:
    from nasclip.indexing.encoder import Encoder

    texts = ["a photo of a cat", "金色頭發的小姐姐", "红色的圆形", "beach Lisbon 2019", "photo " * 90]
    encoder = Encoder.open(load_model_spec(exported), backend="onnx", threads=2)
    try:
        ours = encoder.encode_texts(texts)
    finally:
        encoder.close()
    with torch.no_grad():
        theirs = reference.encode_text(oc.tokenizer.HFTokenizer(str(text_tower), context_length=77)(texts)).numpy()
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_without_the_text_tower_folder_the_export_says_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "nasclip.cli.admin", "models", "export", "--open-clip", ARCH,
                           "--weights", str(tmp_path / "w.pt"), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode != 0 and "--tokenizer DIR" in done.stderr and "config.json" in done.stderr
    assert not (tmp_path / "out").exists()
