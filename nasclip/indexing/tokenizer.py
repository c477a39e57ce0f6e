"""Text to token ids, through Hugging Face ``tokenizers``, as the manifest says.

Two tokenizer families serve the CLIP models nasclip knows:

* CLIP BPE (OpenAI CLIP, context 77): byte-level BPE with an ``</w>``
  end-of-word marker, text lower-cased with whitespace collapsed,
  ``<|startoftext|> ... <|endoftext|>`` around the tokens.
* BERT WordPiece (Chinese-CLIP, context 52): every CJK character is its own
  word, ``[CLS] ... [SEP]`` around the tokens, ``[PAD]`` (id 0) after them.

The manifest's ``text.tokenizer`` names either a ``tokenizer.json`` (any
tokenizers pipeline, e.g. the one OpenAI CLIP exports ship, or one written by
:func:`clip_bpe_tokenizer`) or a BERT ``vocab.txt``, from which the WordPiece
pipeline is built at load time (:func:`wordpiece_tokenizer`). Context length,
pad id and the integer type the encoder wants come from the manifest, not
from the file: the file's own padding/truncation settings are replaced.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from ..errors import ModelError
from ..model.spec import ModelSpec
from .textnorm import TextNormalizer

if TYPE_CHECKING:  # tokenizers is imported where it is used: the light client never needs it
    from tokenizers import Tokenizer

# OpenAI CLIP's word splitter (its ``simple_tokenizer`` pattern without the
# special tokens, which tokenizers handles itself). Applied after lowercasing.
CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
# An alchemical symbol (U+1F700), in no BERT vocabulary: see wordpiece_tokenizer.
WORDPIECE_STAND_IN = "\U0001F700"


def clip_bpe_tokenizer(vocab: Mapping[str, int], merges: Iterable[tuple[str, str]]) -> Tokenizer:
    """OpenAI CLIP's tokenizer from its vocabulary (token -> id) and BPE merges.

    The vocabulary is byte-level (GPT-2's byte-to-unicode alphabet) with
    ``</w>`` marking the last piece of a word, and holds ``<|startoftext|>``
    and ``<|endoftext|>``.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    for special in (CLIP_BOS, CLIP_EOS):
        if special not in vocab:
            raise ModelError(f"CLIP BPE vocabulary has no {special} token")
    tokenizer = Tokenizer(models.BPE(vocab=dict(vocab), merges=[(m[0], m[1]) for m in merges],
                                     unk_token=CLIP_EOS, continuing_subword_prefix="",
                                     end_of_word_suffix="</w>", fuse_unk=False))
    # CLIP's basic_clean + whitespace_clean + lower(): collapse runs of
    # whitespace, lower-case; NFC keeps composed characters whole.
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_BOS} $A {CLIP_EOS}", pair=f"{CLIP_BOS} $A {CLIP_EOS} $B {CLIP_EOS}",
        special_tokens=[(CLIP_BOS, vocab[CLIP_BOS]), (CLIP_EOS, vocab[CLIP_EOS])])
    tokenizer.decoder = decoders.ByteLevel()
    # The special tokens are not added as tokens to match in the text: as in
    # OpenAI's and open_clip's tokenizers, a query that spells
    # "<|endoftext|>" gets the pieces of those characters, not a control token.
    return tokenizer


def byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode table as CLIP orders it: printable bytes as themselves, the rest from U+0100."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for extra, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + extra)
    return list(table.values())  # printable bytes first, then the others in byte order


def clip_bpe_from_merges(lines: list[str]) -> Tokenizer:
    """CLIP's tokenizer from OpenAI's merges file (``bpe_simple_vocab_16e6.txt``, as open_clip ships it).

    The vocabulary follows from the merges, as in OpenAI's ``simple_tokenizer``:
    the 256 byte symbols, the same with ``</w>``, one token per merge (the
    first 48,894 lines after the header), then the two special tokens.
    """
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    if len(merges) != 49152 - 256 - 2 or any(len(m) != 2 for m in merges):
        raise ModelError("not OpenAI's CLIP merges file (48,894 merges of two symbols after a header line)")
    alphabet = byte_alphabet()
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges] + [CLIP_BOS, CLIP_EOS]
    return clip_bpe_tokenizer({t: i for i, t in enumerate(tokens)}, [(m[0], m[1]) for m in merges])


def read_wordpiece_vocab(path: Path) -> dict[str, int]:
    """A BERT vocab.txt (one token per line, id = line number) as token -> id.

    Read as BERT's own ``load_vocab`` reads it: lines end only at "\n"
    (some tokens are characters ``str.splitlines`` would break at, such as
    U+0085), each line stripped, and a repeated token keeps its last id.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the WordPiece vocabulary: {exc}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for number, line in enumerate(lines):
        token = line.strip()
        if token:
            vocab[token] = number
    return vocab


def wordpiece_tokenizer(vocab: Mapping[str, int] | Path) -> Tokenizer:
    """BERT's WordPiece tokenizer (as Chinese-CLIP uses it) from vocab.txt or token -> id.

    Lower-cases and strips accents, splits every CJK character and every
    punctuation mark into its own word, wraps the pieces in [CLS] ... [SEP].
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    source = str(vocab) if isinstance(vocab, Path) else "vocabulary"
    if isinstance(vocab, Path):
        vocab = read_wordpiece_vocab(vocab)
    missing = [t for t in ("[CLS]", "[SEP]", "[UNK]", "[PAD]") if t not in vocab]
    if missing:
        raise ModelError(f"{source}: not a BERT WordPiece vocabulary (no {', '.join(missing)})")
    if WORDPIECE_STAND_IN in vocab or "##" + WORDPIECE_STAND_IN in vocab:
        raise ModelError(f"{source}: holds U+{ord(WORDPIECE_STAND_IN):X}, which nasclip uses as a stand-in")
    # BERT's max_input_chars_per_word as Chinese-CLIP sets it (a longer word is one [UNK]).
    tokenizer = Tokenizer(models.WordPiece(dict(vocab), unk_token="[UNK]", max_input_chars_per_word=200))
    tokenizer.normalizer = normalizers.Sequence([
        # BERT's clean-up drops only Cc/Cf characters; tokenizers' drops every
        # C* category. Private-use and unassigned characters become a symbol
        # no vocabulary holds, so they stay what BERT makes of them: [UNK].
        normalizers.Replace(Regex(r"[\p{Co}\p{Cn}]"), WORDPIECE_STAND_IN),
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer.decoder = decoders.WordPiece()
    # As in BERT's and Chinese-CLIP's own tokenizer, "[CLS]" typed in a query is text.
    return tokenizer


def _drop_from_split_regex(pre_tokenizer: Any, tokens: list[str]) -> None:
    """Remove the alternatives matching exactly one of tokens from Split pre-tokenizers' regexes, in place."""
    if not isinstance(pre_tokenizer, dict):
        return
    for inner in pre_tokenizer.get("pretokenizers") or []:
        _drop_from_split_regex(inner, tokens)
    pattern = pre_tokenizer.get("pattern")
    if pre_tokenizer.get("type") == "Split" and isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
        alternatives = [re.escape(token) for token in tokens]
        regex = pattern["Regex"]
        for alternative in alternatives:
            regex = regex.replace(alternative + "|", "")
        pattern["Regex"] = regex


def _is_clip_bpe(pipeline: Any) -> bool:
    """A tokenizer.json of CLIP's byte-level BPE: words end in "</w>"."""
    model = pipeline.get("model") if isinstance(pipeline, dict) else None
    return isinstance(model, dict) and model.get("type") == "BPE" and model.get("end_of_word_suffix") == "</w>"


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizers pipeline in path: a tokenizer.json, or a BERT vocab.txt."""
    from tokenizers import Tokenizer

    if not path.is_file():
        raise ModelError(f"{path}: missing; model.yaml names it as text.tokenizer")
    if path.suffix == ".txt":
        return wordpiece_tokenizer(path)
    try:
        pipeline = json.loads(path.read_text(encoding="utf-8"))
        # Tokenizer files made by transformers (Immich's among them) list the
        # special tokens as "added tokens", which tokenizers then matches
        # inside the text itself. For CLIP BPE the reference is open_clip's
        # (and OpenAI's) tokenizer, which never does: "<|endoftext|>" typed in
        # a query is text there, so the added tokens go (the post-processor
        # still adds them around every text by id). Other tokenizer.json
        # families (XLM-R, SigLIP's Gemma) have transformers as their
        # reference, which matches them: they stay.
        if _is_clip_bpe(pipeline) and isinstance(pipeline.get("added_tokens"), list):
            specials = [t["content"] for t in pipeline["added_tokens"] if isinstance(t, dict) and t.get("content")]
            pipeline["added_tokens"] = []
            # transformers' CLIP converter also puts them first in the split
            # regex, which would keep "<|endoftext|>" typed in a query whole.
            _drop_from_split_regex(pipeline.get("pre_tokenizer"), specials)
        return Tokenizer.from_str(json.dumps(pipeline))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not a valid tokenizers file (not JSON: {exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the tokenizer file: {exc}") from None
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise ModelError(f"{path}: not a valid tokenizers file: {exc}") from None


class TextTokenizer:
    """Fixed-length token ids (and attention mask) for a model's text encoder."""

    def __init__(self, spec: ModelSpec) -> None:
        tokenizer = load_tokenizer(spec.path(spec.text.tokenizer))
        length = spec.text.context_length
        # Truncation counts the special tokens, so the last kept token is
        # always the end token ([SEP] / <|endoftext|>) that CLIP pools on.
        tokenizer.enable_truncation(max_length=length)
        pad_token = tokenizer.id_to_token(spec.text.pad_id)
        if pad_token is None:
            raise ModelError(f"{spec.path(spec.text.tokenizer)}: has no token with id {spec.text.pad_id} "
                             "(text.pad_id in model.yaml)")
        tokenizer.enable_padding(length=length, pad_id=spec.text.pad_id, pad_token=pad_token)
        self._tokenizer = tokenizer
        # tokenizers objects carry mutable padding state; keep encoding serial.
        self._lock = threading.Lock()
        self.context_length = length
        self.dtype = np.dtype(spec.text.dtype)
        self.normalize = TextNormalizer(spec.text.normalize, spec.text.prefix)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask), both [len(texts), context_length] in the manifest's integer type."""
        # A lone surrogate (JSON can carry one) cannot reach the Rust side.
        cleaned = [self.normalize(text.encode("utf-8", "replace").decode("utf-8")) for text in texts]
        with self._lock:
            encodings = self._tokenizer.encode_batch(cleaned)
        shape = (len(texts), self.context_length)
        ids = np.array([e.ids for e in encodings], dtype=self.dtype).reshape(shape)
        mask = np.array([e.attention_mask for e in encodings], dtype=self.dtype).reshape(shape)
        return ids, mask
