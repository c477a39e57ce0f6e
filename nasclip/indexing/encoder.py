"""A CLIP model ready to embed photos and texts, on whichever backend fits.

``Encoder`` hides the runtime's batch rules (a compiled batch of 1 is
looped, a fixed larger batch is padded), picks the embedding output by name
and L2-normalises every vector, whether or not the model already does.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from ..errors import ModelError
from ..lifecycle import lower_thread_priority
from ..model.spec import ModelSpec
from .backends import BackendName, Session, open_session
from .tokenizer import TextTokenizer

log = logging.getLogger("nasclip.encoder")
T = TypeVar("T")


# Texts of one text-encoder run go to the model in groups whose longest is at most this
# times their shortest (plus a token), so short texts are not padded to long ones.
LENGTH_SPREAD = 1.25


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _run_batched(session: Session, feed: dict[str, np.ndarray], output: str | None) -> np.ndarray:
    """Run feed (all arrays with the same batch length) honouring the session's fixed batch."""
    count = len(next(iter(feed.values())))
    step = session.fixed_batch or count
    parts = []
    for start in range(0, count, step):
        chunk = {k: v[start:start + step] for k, v in feed.items()}
        real = len(next(iter(chunk.values())))
        if session.fixed_batch and real < step:
            # A fixed-batch model needs exactly `step` rows: pad with zeros, drop the extra outputs.
            chunk = {k: np.concatenate([v, np.zeros((step - real,) + v.shape[1:], v.dtype)]) for k, v in chunk.items()}
        outputs = session.run(chunk)
        parts.append(outputs[output] if output else next(iter(outputs.values())))
        parts[-1] = parts[-1].reshape(len(parts[-1]), -1)[:real]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _in_thread(nice: int, make: Callable[[], T]) -> T:
    """make() on a new thread with at least this nice value (0: here); its result or its exception."""
    if nice <= 0:
        return make()
    outcome: list[Any] = []

    def run() -> None:
        lower_thread_priority(nice)
        try:
            outcome.append((True, make()))
        except BaseException as exc:  # handed to the caller below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="nasclip-session", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class Encoder:
    """Image and text embeddings of one model; safe to share across threads."""

    def __init__(self, spec: ModelSpec, image: Session | None, text: Session | None) -> None:
        self.spec = spec
        self._image = image
        self._text = text
        self._tokenizer = TextTokenizer(spec) if text is not None else None
        # text.trim describes the ONNX graph; a compiled .axmodel has fixed shapes.
        self._trim = spec.text.trim and spec.text.onnx is not None

    @classmethod
    def open(cls, spec: ModelSpec, *, backend: BackendName = "auto", threads: int = 0,
             providers: Sequence[str] = ("CPUExecutionProvider",), text_threads: int = 1,
             image: bool = True, text: bool = True, image_nice: int = 0) -> "Encoder":
        """Load the model's sessions; ``backend``, ``threads`` and ``providers`` apply to the image encoder.

        With ``image_nice``, the image encoder's own threads run at that nice
        value: the session is made on a short-lived thread of that priority,
        whose value ONNX Runtime's pool threads inherit. (The thread that
        calls ``encode_images`` takes part in the work at its own priority.)
        """
        image_session = text_session = None
        if image:
            image_session = _in_thread(image_nice, lambda: open_session(
                spec.path(spec.image.onnx) if spec.image.onnx else None,
                spec.path(spec.image.axmodel) if spec.image.axmodel else None,
                backend, threads, providers, announce=True))
            log.info("image encoder of %s on %s", spec.id, image_session.description)
        if text:
            # Text runs on the CPU when there is an ONNX file (queries then never
            # wait for the NPU); a text .axmodel alone runs on the NPU.
            text_onnx = spec.path(spec.text.onnx) if spec.text.onnx else None
            text_session = open_session(text_onnx, spec.path(spec.text.axmodel) if spec.text.axmodel else None,
                                        "onnx" if text_onnx else "axengine", text_threads)
        return cls(spec, image_session, text_session)

    @property
    def model_id(self) -> str:
        return self.spec.id

    @property
    def dim(self) -> int:
        return self.spec.embedding_dim

    @property
    def backend(self) -> str:
        return self._image.description if self._image else "none"

    def _check_dim(self, vectors: np.ndarray, what: str) -> np.ndarray:
        if vectors.shape[1] != self.dim:
            raise ModelError(f"{self.spec.folder}: {what} encoder gives {vectors.shape[1]} values, "
                             f"model.yaml says embedding_dim {self.dim}")
        return l2_normalise(vectors)

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        """Unit vectors [N, dim] for preprocessed images [N, ...] in the manifest's layout."""
        if self._image is None:
            raise ModelError("this encoder was opened without its image model")
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        raw = _run_batched(self._image, {self.spec.image.input_name: batch}, self.spec.image.output_name)
        return self._check_dim(raw, "image")

    def text_key(self, text: str) -> str:
        """What the tokenizer sees of text (after text.normalize): texts with one key get one vector."""
        return self._tokenizer.normalize(text) if self._tokenizer is not None else text

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors [N, dim] for texts."""
        if self._text is None or self._tokenizer is None:
            raise ModelError("this encoder was opened without its text model")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        ids, mask = self._tokenizer.encode(list(texts))
        if not self._trim:
            return self._run_text(ids, mask)
        # Padding after the longest text changes nothing in a trim model's vectors;
        # leaving it out makes "red car" ~10x cheaper than 77 tokens. A batch of
        # queries mixes lengths (a Chinese query is often three times an English
        # one), so texts of similar length run together: 32 mixed queries cost
        # 0.57x of one run padded to the longest.
        lengths = np.maximum(mask.sum(axis=1), 1)
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.dim), np.float32)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and lengths[order[end]] <= lengths[order[start]] * LENGTH_SPREAD + 1:
                end += 1
            rows = order[start:end]
            length = int(lengths[rows[-1]])
            out[rows] = self._run_text(ids[rows, :length], mask[rows, :length])
            start = end
        return out

    def _run_text(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        assert self._text is not None, "encode_texts checked it"
        feed = {self.spec.text.input_name: ids}
        if self.spec.text.mask_name:
            feed[self.spec.text.mask_name] = mask
        raw = _run_batched(self._text, feed, self.spec.text.output_name)
        return self._check_dim(raw, "text")

    def close(self) -> None:
        for session in (self._image, self._text):
            if session is not None:
                session.close()
