"""Text to token ids, through Hugging Face ``tokenizers``, as the manifest says.

CLIP BPE and BERT WordPiece (Chinese-CLIP, the demo model) are both plain
``tokenizer.json`` files; what differs between models is the context length
and the pad id, which come from the manifest, not from the file.
"""

from __future__ import annotations

import threading

import numpy as np

from .errors import ModelError
from .modelspec import ModelSpec


class TextTokenizer:
    """Fixed-length int64 token ids (and attention mask) for a model's text encoder."""

    def __init__(self, spec: ModelSpec) -> None:
        from tokenizers import Tokenizer

        path = spec.path(spec.text.tokenizer)
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise ModelError(f"{path}: not a valid tokenizers file: {exc}") from None
        length = spec.text.context_length
        tokenizer.enable_truncation(max_length=length)
        pad_token = tokenizer.id_to_token(spec.text.pad_id) or "[PAD]"
        tokenizer.enable_padding(length=length, pad_id=spec.text.pad_id, pad_token=pad_token)
        self._tokenizer = tokenizer
        # tokenizers objects carry mutable padding state; keep encoding serial.
        self._lock = threading.Lock()
        self.context_length = length

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, mask), both int64 [len(texts), context_length]."""
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), self.context_length)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(ids.shape)
        return ids, mask
