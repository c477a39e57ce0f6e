"""Inference runtimes behind one small protocol.

A ``Session`` runs one model file: ``run(feed)`` takes named input arrays and
returns the outputs as arrays the caller owns. One class per runtime (ONNX
Runtime on the CPU, pyaxengine on the AX650N NPU); runtimes that may be absent
are imported inside their class. ``open_session`` is the single place that
chooses between them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np

from ...errors import ModelError

log = logging.getLogger("nasclip.backends")

BackendName = Literal["auto", "onnx", "axengine"]


class Session(Protocol):
    """One loaded model file, ready to run."""

    #: Human-readable runtime description for logs and status.
    description: str
    #: Batch size the model was compiled for, or None when the batch axis is dynamic.
    fixed_batch: int | None

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every output by name, as arrays the caller may keep."""
        ...

    def input_names(self) -> list[str]:
        """Names of the model's inputs, in order."""
        ...

    def close(self) -> None:
        """Release the runtime's resources; idempotent."""
        ...


def axengine_available() -> bool:
    """True where the NPU runtime imports (it raises ImportError elsewhere)."""
    try:
        import axengine  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(backend: BackendName, axmodel_path: Path | None) -> tuple[str, str]:
    """The runtime ``backend`` means for a model, and why (for the log)."""
    if backend != "auto":
        return backend, "set by indexer.backend"
    if axmodel_path is None:
        return "onnx", "auto: the model has no image.axmodel"
    if not axengine_available():
        return "onnx", "auto: the axengine module (AXERA's NPU runtime) is not installed"
    return "axengine", "auto: axengine imports and the model has an image.axmodel"


def open_session(onnx_path: Path | None, axmodel_path: Path | None, backend: BackendName,
                 threads: int = 0, providers: Sequence[str] = ("CPUExecutionProvider",),
                 announce: bool = False) -> Session:
    """Open the model file that fits the configured backend.

    ``auto`` takes the NPU where axengine imports and an .axmodel exists,
    else ONNX Runtime on the CPU; with ``announce`` the choice and its
    reason are logged.
    """
    chosen, reason = choose_backend(backend, axmodel_path)
    if announce:
        log.info("image encoder backend: %s (%s)", "NPU via axengine" if chosen == "axengine"
                 else "CPU via ONNX Runtime", reason)
    backend = chosen  # type: ignore[assignment]
    if backend == "axengine":
        if axmodel_path is None:
            raise ModelError("indexer.backend is axengine but the model has no image.axmodel")
        from .axengine import AxEngineSession

        return AxEngineSession(axmodel_path)
    if onnx_path is None:
        raise ModelError("the model has no ONNX file for the CPU backend (image.onnx); "
                         "set indexer.backend: axengine or use another model")
    from .onnx import OnnxSession

    return OnnxSession(onnx_path, threads=threads, providers=providers)
