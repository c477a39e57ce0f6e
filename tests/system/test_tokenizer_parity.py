"""Token ids against the reference tokenizers, on the text corpus (tests/textcorpus.py).

A text tokenized differently from the way the model's authors tokenize it
gives a different vector, and every search with it is quietly worse. The
oracles are the reference implementations themselves: ``open_clip.tokenize``
(with the BPE merges its wheel ships) and ``cn_clip.clip.tokenize`` (with the
``vocab.txt`` its wheel ships). nasclip's side is TextTokenizer, the code the
daemon tokenizes queries with, reading the files a model folder holds.

The folder the open_clip export writes is compared in test_open_clip.py; here
are the two forms nasclip meets from elsewhere: the ``tokenizer.json``
transformers writes for OpenAI's CLIP (the file Immich's models ship), and
Chinese-CLIP's ``vocab.txt``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL
from textcorpus import EMOJI, FULLWIDTH, NUMBERS, WORDS_EN, WORDS_ZH, WORDS_ZH_TRAD, corpus

from nasclip.indexing.tokenizer import TextTokenizer
from nasclip.model.reference import cn_clip, import_torch, open_clip
from nasclip.model.spec import ModelSpec, NormalizeStep, load_model_spec

import_torch()
import transformers  # noqa: E402  (after import_torch, which makes torchvision importable)

TEXTS = corpus(2400)
# Chinese-CLIP's users type Chinese: more of it, with traditional characters,
# full-width punctuation, English mixed in and queries past 52 tokens.
def chinese_corpus(n: int = 2000, seed: int = 52) -> list[str]:
    rng = random.Random(seed)
    pools = (WORDS_ZH, WORDS_ZH_TRAD, WORDS_ZH_TRAD, FULLWIDTH, WORDS_EN, EMOJI, NUMBERS)
    seps = ("", "", "，", "、", "。", "！", "？", "：", "「", "」", " ", "\u3000")
    seen: dict[str, None] = {}
    while len(seen) < n:
        parts = [rng.choice(rng.choice(pools)) + rng.choice(seps) for _ in range(rng.randint(1, 8))]
        text = "".join(parts)
        if rng.random() < 0.1:
            text = text * rng.randint(8, 20)
        seen.setdefault(text)
    return list(seen)


CHINESE = chinese_corpus()


def spec_with(folder: Path, tokenizer: str, length: int, normalize: tuple[NormalizeStep, ...] = (),
              pad_id: int = 0) -> ModelSpec:
    """The demo manifest with another tokenizer: TextTokenizer reads only the text part."""
    demo = load_model_spec(DEMO_MODEL)
    text = dataclasses.replace(demo.text, tokenizer=tokenizer, context_length=length, pad_id=pad_id,
                               normalize=normalize)
    return dataclasses.replace(demo, text=text, folder=folder)


def mismatches(ours: np.ndarray, theirs: np.ndarray, texts: list[str]) -> list[tuple[str, list, list]]:
    assert ours.shape == theirs.shape
    bad = np.nonzero((ours.astype(np.int64) != theirs.astype(np.int64)).any(axis=1))[0]
    return [(texts[i], ours[i].tolist(), theirs[i].tolist()) for i in bad[:5]]


@pytest.fixture(scope="module")
def immich_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tokenizer.json as transformers writes it for OpenAI's CLIP, from open_clip's own vocabulary.

    vocab.json and merges.txt are what OpenAI's checkpoints ship; the fast
    tokenizer converted from them and saved with save_pretrained is the
    tokenizer.json of Hugging Face's openai/clip-vit-base-patch32 (and so
    Immich's): special tokens as added tokens, NFC + whitespace + lower-case
    normaliser, CLIP's split regex, byte-level BPE.
    """
    folder = tmp_path_factory.mktemp("immich-tokenizer")
    reference = open_clip().tokenizer.SimpleTokenizer()
    # open_clip names its two special tokens <start_of_text>/<end_of_text>;
    # OpenAI's vocab.json (ids 49406, 49407) <|startoftext|>/<|endoftext|>.
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(token, token): i for token, i in reference.encoder.items()}
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = sorted(reference.bpe_ranks, key=reference.bpe_ranks.get)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                       encoding="utf-8")
    fast = transformers.CLIPTokenizerFast.from_pretrained(folder)
    fast.save_pretrained(folder / "saved")
    shutil.copyfile(folder / "saved" / "tokenizer.json", folder / "tokenizer.json")
    return folder


def test_the_immich_form_has_its_special_tokens_as_added_tokens(immich_tokenizer: Path) -> None:
    # The premise of the next test: this is the hard form, where tokenizers
    # itself would match "<|endoftext|>" inside a query.
    pipeline = json.loads((immich_tokenizer / "tokenizer.json").read_text(encoding="utf-8"))
    assert {t["content"] for t in pipeline["added_tokens"]} >= {"<|startoftext|>", "<|endoftext|>"}
    assert pipeline["model"]["type"] == "BPE" and len(pipeline["model"]["vocab"]) == 49408


def test_clip_bpe_from_the_immich_tokenizer_json_equals_open_clip(immich_tokenizer: Path) -> None:
    tokenizer = TextTokenizer(spec_with(immich_tokenizer, "tokenizer.json", 77, ("clean",)))
    ours, mask = tokenizer.encode(TEXTS)
    theirs = open_clip().tokenize(TEXTS).numpy()
    assert len(TEXTS) >= 2000
    assert mismatches(ours, theirs, TEXTS) == []
    # The mask covers start to end token ("!" is id 0, so not "ids != 0").
    assert np.array_equal(mask.sum(axis=1), (theirs == 49407).argmax(axis=1) + 1)
    # Over-long texts end in <|endoftext|> in the last slot, as open_clip truncates.
    long = [i for i, t in enumerate(TEXTS) if theirs[i, -1] != 0]
    assert len(long) > 50 and (ours[long, -1] == 49407).all()


@pytest.fixture(scope="module")
def cn_vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cn-clip-vocab")
    source = Path(cn_clip().__file__).parent / "vocab.txt"
    shutil.copyfile(source, folder / "vocab.txt")
    return folder


def cn_clip_tokenize(texts: list[str]) -> np.ndarray:
    return cn_clip().tokenize(texts, context_length=52).numpy()


def test_cn_clip_vocab_is_the_21128_line_bert_chinese_vocabulary(cn_vocab: Path) -> None:
    lines = (cn_vocab / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert len([line for line in lines if line]) == 21128 and lines[0] == "[PAD]"


@pytest.mark.parametrize("texts", [TEXTS, CHINESE], ids=["corpus", "chinese"])
def test_wordpiece_from_vocab_txt_equals_cn_clip(cn_vocab: Path, texts: list[str]) -> None:
    tokenizer = TextTokenizer(spec_with(cn_vocab, "vocab.txt", 52))
    ours, _ = tokenizer.encode(texts)
    theirs = cn_clip_tokenize(texts)
    assert len(texts) >= 2000
    assert mismatches(ours, theirs, texts) == []
    long = [i for i in range(len(texts)) if theirs[i, -1] != 0]
    assert len(long) > 50 and (ours[long, -1] == 102).all()  # [SEP] kept in the last slot


def test_t2s_gives_cn_clip_the_simplified_text(cn_vocab: Path) -> None:
    # The normalisation runs before tokenizing: a traditional query becomes the
    # ids cn_clip gives the simplified one (OpenCC's t2s, what the step uses).
    import opencc

    tokenizer = TextTokenizer(spec_with(cn_vocab, "vocab.txt", 52, ("t2s",)))
    ours, _ = tokenizer.encode(CHINESE)
    converter = opencc.OpenCC("t2s")
    simplified = [converter.convert(t) for t in CHINESE]
    assert sum(s != t for s, t in zip(simplified, CHINESE)) > 800, "the traditional part must change"
    assert mismatches(ours, cn_clip_tokenize(simplified), CHINESE) == []
    plain, _ = TextTokenizer(spec_with(cn_vocab, "vocab.txt", 52)).encode(["紅色的圓形", "红色的圆形"])
    folded, _ = tokenizer.encode(["紅色的圓形", "红色的圆形"])
    assert not np.array_equal(plain[0], plain[1]) and np.array_equal(folded[0], folded[1])



@pytest.mark.parametrize("mode", ["lower", "whitespace", "canonicalize"])
def test_normalize_steps_equal_open_clips_text_cleaning(mode: str) -> None:
    # The export writes these steps for open_clip's clean modes; each must be
    # the very function open_clip's tokenizers call (SigLIP's canonicalize included).
    from nasclip.indexing.textnorm import TextNormalizer
    from nasclip.model.export_open_clip import CLEAN_STEPS

    theirs = open_clip().tokenizer.get_clean_fn(mode)
    ours = TextNormalizer(CLEAN_STEPS[mode])
    bad = [t for t in TEXTS if ours(t) != theirs(t)]
    assert bad[:5] == []


def test_prefix_comes_after_the_steps() -> None:
    from nasclip.indexing.textnorm import TextNormalizer

    assert TextNormalizer(("t2s", "lower"), prefix="zho_Hans ")("紅色 CIRCLE") == "zho_Hans 红色 circle"
