"""Token ids for CLIP BPE and BERT WordPiece, checked against ids worked out by hand.

Both vocabularies are built here, in the layout the real ones use, so every
expected id below follows from the vocabulary's definition, not from running
a tokenizer: the CLIP one is OpenAI's byte-level alphabet (256 symbols, then
the same 256 with the end-of-word marker ``</w>``), our merges, then the two
special tokens; the WordPiece one is a numbered token list as in vocab.txt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nasclip.errors import ModelError
from nasclip.indexing.tokenizer import (
    TextTokenizer,
    clip_bpe_tokenizer,
    wordpiece_tokenizer,
)
from nasclip.model.spec import ImageSpec, ModelSpec, TextSpec


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's (GPT-2's) reversible byte -> printable character table, in CLIP's vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# Words our merges build whole (with the end-of-word marker).
CLIP_WORDS = ["photo", "of", "cat", "dog", "red", "circle"]


def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style vocabulary: 256 bytes, 256 bytes + </w>, merges left to right, then specials."""
    base = list(bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base]
    merges: list[tuple[str, str]] = []
    for word in CLIP_WORDS:
        piece = word[0]
        for i, char in enumerate(word[1:], 1):
            right = char + "</w>" if i == len(word) - 1 else char
            merges.append((piece, right))
            piece = piece + right
            if piece not in tokens:
                tokens.append(piece)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


VOCAB, MERGES = clip_vocab()
BOS, EOS = VOCAB["<|startoftext|>"], VOCAB["<|endoftext|>"]


def char_id(c: str) -> int:
    """Id of a printable ASCII character as a word-inner piece: '!' is 0, 'a' is 97 - 33 = 64."""
    return ord(c) - ord("!")


def test_clip_vocabulary_layout_is_the_one_the_hand_worked_ids_assume() -> None:
    assert VOCAB["!"] == 0 and VOCAB["a"] == 64 and VOCAB["a</w>"] == 256 + 64
    # photo: p+h -> ph (512), ph+o -> pho, pho+t -> phot, phot+o</w> -> photo</w> (515)
    assert VOCAB["ph"] == 512 and VOCAB["photo</w>"] == 515
    assert VOCAB["of</w>"] == 516
    assert VOCAB["ca"] == 517 and VOCAB["cat</w>"] == 518
    assert (BOS, EOS) == (len(VOCAB) - 2, len(VOCAB) - 1)


def spec_for(folder: Path, tokenizer: str, context: int, pad: int = 0, dtype: str = "int64") -> ModelSpec:
    return ModelSpec(format=1, id="t", embedding_dim=4, image=ImageSpec(onnx="i.onnx"),
                     text=TextSpec(tokenizer=tokenizer, onnx="t.onnx", context_length=context, pad_id=pad,
                                   dtype=dtype), folder=folder)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> TextTokenizer:
    folder = tmp_path_factory.mktemp("clip")
    clip_bpe_tokenizer(VOCAB, MERGES).save(str(folder / "tokenizer.json"))
    return TextTokenizer(spec_for(folder, "tokenizer.json", 77))


def clip_ids(tokenizer: TextTokenizer, text: str) -> list[int]:
    ids, mask = tokenizer.encode([text])
    length = int(mask[0].sum())
    assert (ids[0, length:] == 0).all(), "padding after the end token must be pad id 0"
    return ids[0, :length].tolist()


def test_english_sentence_bpe_ids(clip: TextTokenizer) -> None:
    a, photo, of, cat = 256 + 64, 515, 516, 518
    assert clip_ids(clip, "a photo of a cat") == [BOS, a, photo, of, a, cat, EOS]


def test_case_and_whitespace_are_normalised_as_clip_does(clip: TextTokenizer) -> None:
    assert clip_ids(clip, "  A   PHOTO\tof a\n Cat ") == clip_ids(clip, "a photo of a cat")


def test_partial_merges_and_punctuation(clip: TextTokenizer) -> None:
    # "cats": c+a merges to "ca", but "t" is not word-final so ca+t</w> does not apply.
    cats = [VOCAB["ca"], char_id("t"), 256 + char_id("s")]
    # "dog!": the punctuation run is its own word, ending in </w>.
    assert clip_ids(clip, "cats dog!") == [BOS, *cats, VOCAB["dog</w>"], 256 + char_id("!"), EOS]


def test_chinese_text_falls_back_to_utf8_bytes_in_bpe(clip: TextTokenizer) -> None:
    # 猫 is UTF-8 e7 8c ab. e7 (231) is the 106 + (231 - 174) = 163rd printable symbol; 8c (140) is
    # not printable and gets 221 + (140 - 127) = 234; ab (171) is 94 + (171 - 161) = 104, word-final.
    assert clip_ids(clip, "猫") == [BOS, 163, 234, 256 + 104, EOS]


def test_long_text_truncated_to_77_ending_with_the_end_token(clip: TextTokenizer) -> None:
    ids, mask = clip.encode(["red " * 100])
    assert ids.shape == (1, 77) and mask.all()
    assert ids[0, 0] == BOS and ids[0, -1] == EOS
    assert (ids[0, 1:-1] == VOCAB["red</w>"]).all()


def test_batch_shapes_mask_and_integer_type_follow_the_manifest(tmp_path: Path) -> None:
    clip_bpe_tokenizer(VOCAB, MERGES).save(str(tmp_path / "tokenizer.json"))
    tokenizer = TextTokenizer(spec_for(tmp_path, "tokenizer.json", 10, pad=EOS, dtype="int32"))
    ids, mask = tokenizer.encode(["a cat", "red circle of a dog"])
    assert ids.dtype == np.int32 and mask.dtype == np.int32 and ids.shape == (2, 10)
    assert ids[0].tolist() == [BOS, 320, 518, EOS] + [EOS] * 6
    assert mask[0].tolist() == [1] * 4 + [0] * 6
    assert ids[1, :7].tolist() == [BOS, VOCAB["red</w>"], VOCAB["circle</w>"], 516, 320, VOCAB["dog</w>"], EOS]


def test_hugging_face_clip_tokenizer_agrees(clip: TextTokenizer, tmp_path: Path) -> None:
    """An independent implementation (transformers' CLIPTokenizer) gives the same ids."""
    import transformers

    (tmp_path / "vocab.json").write_text(json.dumps(VOCAB))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in MERGES) + "\n")
    reference = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    for text in ["a photo of a cat", "Cats, dogs!", "a red circle 12"]:
        assert clip_ids(clip, text) == reference(text)["input_ids"]


# --- BERT WordPiece (Chinese-CLIP) -------------------------------------------------------------

WORDPIECE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
             "金", "色", "头", "发", "的", "小", "姐",            # 5..11
             "黄", "背", "景", "上", "蓝", "正", "方", "形",      # 12..19
             "photo", "##s", "of", "a", "red", "circle", "，"]   # 20..26


@pytest.fixture(scope="module")
def vocab_txt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wordpiece")
    (folder / "vocab.txt").write_text("\n".join(WORDPIECE) + "\n", encoding="utf-8")
    return folder


def bert_ids(tokenizer: TextTokenizer, text: str) -> list[int]:
    ids, mask = tokenizer.encode([text])
    length = int(mask[0].sum())
    assert (ids[0, length:] == 0).all()
    return ids[0, :length].tolist()


@pytest.fixture(scope="module")
def bert(vocab_txt: Path) -> TextTokenizer:
    return TextTokenizer(spec_for(vocab_txt, "vocab.txt", 52))


def test_chinese_sentences_wordpiece_ids(bert: TextTokenizer) -> None:
    assert bert_ids(bert, "金色头发的小姐姐") == [2, 5, 6, 7, 8, 9, 10, 11, 11, 3]
    assert bert_ids(bert, "黄色背景上的蓝色正方形") == [2, 12, 6, 13, 14, 15, 9, 16, 6, 17, 18, 19, 3]


def test_unknown_characters_punctuation_and_mixed_scripts(bert: TextTokenizer) -> None:
    # 猫 is not in the vocabulary; "，" splits; "red色" becomes two words (CJK characters stand alone).
    assert bert_ids(bert, "金色的猫，red色") == [2, 5, 6, 9, 1, 26, 24, 6, 3]


def test_english_wordpiece_lowercases_strips_accents_and_splits_suffixes(bert: TextTokenizer) -> None:
    assert bert_ids(bert, "Photos of a RÉD circle") == [2, 20, 21, 22, 23, 24, 25, 3]


def test_wordpiece_truncates_to_52_with_sep_last_and_pads_with_zero(bert: TextTokenizer) -> None:
    ids, mask = bert.encode(["金" * 80, "小"])
    assert ids.shape == (2, 52)
    assert ids[0].tolist() == [2] + [5] * 50 + [3]
    assert ids[1].tolist() == [2, 10, 3] + [0] * 49 and mask[1].sum() == 3


def test_vocab_txt_and_saved_tokenizer_json_give_the_same_ids(vocab_txt: Path, tmp_path: Path) -> None:
    wordpiece_tokenizer(vocab_txt / "vocab.txt").save(str(tmp_path / "tokenizer.json"))
    from_json = TextTokenizer(spec_for(tmp_path, "tokenizer.json", 52))
    from_txt = TextTokenizer(spec_for(vocab_txt, "vocab.txt", 52))
    texts = ["金色头发的小姐姐", "photos of a red circle", "黄色，蓝色"]
    assert (from_json.encode(texts)[0] == from_txt.encode(texts)[0]).all()


def test_hugging_face_bert_tokenizer_agrees(bert: TextTokenizer, vocab_txt: Path) -> None:
    import transformers

    reference = transformers.BertTokenizer(str(vocab_txt / "vocab.txt"))
    for text in ["金色头发的小姐姐", "黄色背景上的蓝色正方形", "Photos of a RÉD circle，猫"]:
        assert bert_ids(bert, text) == reference(text)["input_ids"]


def test_bad_tokenizer_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(ModelError, match=r"vocab\.txt: not a BERT WordPiece vocabulary \(no \[CLS\]"):
        TextTokenizer(spec_for(tmp_path, "vocab.txt", 52))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"tokenizer\.json: not a valid tokenizers file"):
        TextTokenizer(spec_for(tmp_path, "tokenizer.json", 52))
    clip_bpe_tokenizer(VOCAB, MERGES).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ModelError, match="has no token with id 99999"):
        TextTokenizer(spec_for(tmp_path, "tokenizer.json", 52, pad=99999))
