"""Where the OCR models are: the ONNX files the ``rapidocr-onnxruntime`` wheel ships.

PaddleOCR's PP-OCRv4 models (Apache-2.0, converted to ONNX by RapidOCR, also
Apache-2.0) come inside that package: text detection (DB), the text-line
direction classifier and the Chinese-and-English recogniser, whose character
list is stored in the recogniser's own ONNX metadata. nasclip uses only the
files: the package's Python code imports OpenCV's GUI build, PyYAML readers
and shapely, so it is installed with ``pip install --no-deps`` and is never
imported here (``find_spec`` locates it without running it). Nothing is
copied into nasclip's repository.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

PACKAGE = "rapidocr-onnxruntime"
MODULE = "rapidocr_onnxruntime"
DETECTOR = "ch_PP-OCRv4_det_infer.onnx"
CLASSIFIER = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
RECOGNIZER = "ch_PP-OCRv4_rec_infer.onnx"
INSTALL_HINT = f"install it with `pip install --no-deps {PACKAGE}==1.4.4` (docs/ocr.md), or set ocr.enabled: false"


@dataclass(frozen=True)
class OcrModels:
    """The three model files."""

    folder: Path
    detector: Path
    classifier: Path
    recognizer: Path


def locate(folder: Path | None = None) -> OcrModels:
    """The model files, from ``folder`` or the installed package; ModelError saying how to get them."""
    if folder is None:
        spec = importlib.util.find_spec(MODULE)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            raise ModelError(f"text recognition needs the OCR models of the Python package {PACKAGE}, "
                             f"which is not installed: {INSTALL_HINT}")
        folder = Path(locations[0]) / "models"
    models = OcrModels(folder, folder / DETECTOR, folder / CLASSIFIER, folder / RECOGNIZER)
    missing = [p.name for p in (models.detector, models.classifier, models.recognizer) if not p.is_file()]
    if missing:
        raise ModelError(f"{folder}: the OCR model files {', '.join(missing)} are missing; "
                         f"{PACKAGE} 1.4.x ships them: {INSTALL_HINT}")
    return models
