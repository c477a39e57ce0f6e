"""One photo in, its lines of text out: detection, then recognition only where text was found.

Why nasclip runs PP-OCRv4 itself instead of RapidOCR's pipeline: the
sessions must be made the way nasclip makes every session (ONNX Runtime
threads that sleep when idle, a thread count from the config, the nice
value of the thread that makes them), the photo comes from nasclip's
bounded decoder (JPEGs decoded at reduced scale in the DCT, EXIF rotation,
every pixel mode), and RapidOCR's code needs OpenCV's GUI build, shapely
and pyclipper. The steps and constants are PaddleOCR's for these models
(detect.py, recognize.py), and tests/system/test_ocr_quality.py checks the
result against RapidOCR's own pipeline on many photos.

The detector sees the photo at most ``ocr.max_side`` pixels on its long
side; lines lower than ``ocr.min_text_height`` pixels of the photo are not
read; characters of scripts not in ``ocr.languages`` are dropped (the model
reads Chinese and Latin script; digits and punctuation are always kept).
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

from ..errors import ModelError
from ..indexing.backends.onnx import OnnxSession
from .detect import Detector
from .models import OcrModels, locate
from .recognize import MIN_SCORE, Classifier, Recognizer, crop_line
from .textform import is_cjk

if TYPE_CHECKING:
    from ..config import OcrConfig

log = logging.getLogger("nasclip.ocr")

MIN_PHOTO_SIDE = 16  # a smaller image cannot show a readable line


@dataclass(frozen=True)
class TextLine:
    """One line read in a photo."""

    text: str
    score: float  # mean probability of its characters
    height: float  # in the photo's own pixels


@dataclass(frozen=True)
class Reading:
    """What one photo says: its lines in reading order, and whether the recogniser had to run."""

    lines: tuple[TextLine, ...]
    detected: int  # lines the detector found, before the size limit
    recognised: bool  # False: no line to read, the recogniser was skipped

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines]


def _script(c: str) -> str | None:
    """'zh' for Chinese characters, 'en' for letters of Latin script, None for what every language keeps."""
    if is_cjk(c):
        return "zh"
    if c.isalpha():
        return "en" if "LATIN" in unicodedata.name(c, "") else "other"
    return None


def keep_languages(text: str, languages: Sequence[str]) -> str:
    """text without the letters of scripts not in languages (digits, punctuation and spaces stay)."""
    if {"zh", "en"} <= set(languages):
        return text
    kept = "".join(c for c in text if _script(c) in (None, *languages))
    return " ".join(kept.split())


class OcrEngine:
    """PP-OCRv4 on ONNX Runtime; one photo at a time (not to be shared by threads running at once)."""

    def __init__(self, detector: Detector, classifier: Classifier, recognizer: Recognizer,
                 languages: Sequence[str] = ("zh", "en"), min_text_height: int = 10, max_side: int = 2000) -> None:
        self.detector = detector
        self.classifier = classifier
        self.recognizer = recognizer
        self.languages = tuple(languages)
        self.min_text_height = min_text_height
        self.max_side = max_side

    @classmethod
    def open(cls, config: "OcrConfig", models: OcrModels | None = None) -> "OcrEngine":
        """Sessions for the three models, with config.threads ONNX Runtime threads each.

        Make it on the thread (or at the priority) its work should run at:
        ONNX Runtime's pool threads take the nice value of the thread that
        creates the session, and with one thread the caller does all the work.
        """
        models = models or locate()
        detector = OnnxSession(models.detector, threads=config.threads)
        classifier = OnnxSession(models.classifier, threads=config.threads)
        recognizer = OnnxSession(models.recognizer, threads=config.threads)
        characters = recognizer.metadata().get("character", "").splitlines()
        if not characters:
            raise ModelError(f"{models.recognizer}: no character list in its metadata; is it a PP-OCR recogniser?")
        log.info("text recognition: PP-OCRv4 from %s on %s", models.folder, detector.description)
        return cls(Detector(detector), Classifier(classifier), Recognizer(recognizer, characters),
                   config.languages, config.min_text_height, config.max_side)

    def read(self, image: Image.Image, scale: float = 1.0) -> Reading:
        """The text of an RGB image that shows the photo at ``scale`` times its own size."""
        if max(image.size) > self.max_side:
            factor = self.max_side / max(image.size)
            size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
            scale *= factor
        if min(image.size) < MIN_PHOTO_SIDE:
            return Reading((), 0, False)
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
        boxes = self.detector(bgr)
        # A line's height is its shorter side (a column of Chinese is taller than it is wide).
        tall = [(box, min(float(np.linalg.norm(box[0] - box[3])), float(np.linalg.norm(box[0] - box[1]))) / scale)
                for box in boxes]
        tall = [(box, height) for box, height in tall if height >= self.min_text_height]
        if not tall:
            return Reading((), len(boxes), False)
        crops = [crop_line(bgr, box) for box, _ in tall]
        flipped = self.classifier(crops)
        reads = self.recognizer(crops)
        turned = [i for i, flip in enumerate(flipped) if flip]
        if turned:  # read both ways, keep the more certain (recognize.py says why)
            for i, read in zip(turned, self.recognizer([np.ascontiguousarray(crops[i][::-1, ::-1]) for i in turned])):
                if read.score > reads[i].score:
                    reads[i] = read
        lines = []
        for (_, height), read in zip(tall, reads):
            text = keep_languages(read.text.strip(), self.languages)
            if read.score >= MIN_SCORE and text:
                lines.append(TextLine(text, read.score, height))
        return Reading(tuple(lines), len(boxes), True)
