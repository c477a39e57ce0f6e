"""ONNX Runtime on the CPU (or any execution provider ONNX Runtime offers)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import ModelError

log = logging.getLogger("nasclip.backends")


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxSession:
    """A Session backed by onnxruntime.InferenceSession; safe to run from several threads."""

    def __init__(self, path: Path, *, threads: int = 0,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # 0 means one thread per core this process may run on (a container may
        # allow fewer than the machine has); tests and queries ask for fewer.
        options.intra_op_num_threads = threads if threads > 0 else usable_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ONNX Runtime threads spin for a while by default. On a 2-4 core NAS
        # that spinning steals the cores the decode pool needs between batches;
        # sleeping threads cost a little wake-up latency and give the CPU back.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        chosen = [p for p in providers if p in available]
        missing = [p for p in providers if p not in available]
        if missing:
            log.warning("ONNX Runtime here has no %s (available: %s); indexer.onnx_providers falls back to %s",
                        ", ".join(missing), ", ".join(available), chosen[0] if chosen else "CPUExecutionProvider")
        chosen = chosen or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: ONNX Runtime cannot load it: {exc}") from None
        self._outputs = [o.name for o in self._session.get_outputs()]
        shape = self._session.get_inputs()[0].shape
        self.fixed_batch = shape[0] if shape and isinstance(shape[0], int) else None
        self.description = f"onnxruntime {ort.__version__} ({chosen[0]}, {options.intra_op_num_threads} threads)"

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._session.run(self._outputs, feed)
        except Exception as exc:  # wrong shape or dtype: a model/manifest mismatch
            raise ModelError(f"ONNX Runtime cannot run the model: {exc}") from None
        return dict(zip(self._outputs, outputs))

    def input_names(self) -> list[str]:
        return [i.name for i in self._session.get_inputs()]

    def metadata(self) -> dict[str, str]:
        """The model file's custom metadata (e.g. a PP-OCR recogniser's character list)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def close(self) -> None:
        self._session = None
