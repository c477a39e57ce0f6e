"""pyaxengine on the AX650N NPU.

The runtime's documented constraints, all handled here so callers need not
know them: inputs must match the compiled shape and dtype exactly; models are
usually compiled for batch 1 (``fixed_batch``); one session must not run from
two threads at once; before 0.1.3 output buffers are reused by the next run,
so outputs are copied.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import ModelError

_NUMPY_DTYPES = {
    "uint8": np.uint8, "int8": np.int8, "float32": np.float32, "float": np.float32,
    "int32": np.int32, "int64": np.int64, "float16": np.float16,
}


def _dtype(value: object) -> np.dtype:
    """numpy dtype from whatever axengine reports (a numpy dtype or a name like 'uint8')."""
    if isinstance(value, str):
        name = value.lower().replace("tensor(", "").rstrip(")")
        if name in _NUMPY_DTYPES:
            return np.dtype(_NUMPY_DTYPES[name])
    return np.dtype(value)  # type: ignore[call-overload]


class AxEngineSession:
    """A Session backed by axengine.InferenceSession."""

    description: str
    fixed_batch: int | None

    def __init__(self, path: Path) -> None:
        try:
            import axengine
        except ImportError:
            raise ModelError("indexer.backend is axengine but the axengine module is not installed "
                             "(install AXERA's pyaxengine wheel; see README, 'AX650N boards')") from None
        try:
            self._session = axengine.InferenceSession(str(path), providers=["AxEngineExecutionProvider"])
        except Exception as exc:  # the vendor runtime raises its own errors
            raise ModelError(f"{path}: axengine cannot load it: {exc}") from None
        self._lock = threading.Lock()
        self._inputs = {i.name: (tuple(i.shape), _dtype(i.dtype)) for i in self._session.get_inputs()}
        self._outputs = [o.name for o in self._session.get_outputs()]
        first_shape = next(iter(self._inputs.values()))[0]
        self.fixed_batch = int(first_shape[0]) if first_shape else 1
        self.description = f"axengine {getattr(axengine, '__version__', '?')} (NPU, batch {self.fixed_batch})"

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared = {}
        for name, array in feed.items():
            if name not in self._inputs:
                raise ModelError(f"axmodel has no input named {name!r}; inputs: {list(self._inputs)}")
            shape, dtype = self._inputs[name]
            if tuple(array.shape) != shape:
                raise ModelError(f"axmodel input {name!r} needs shape {shape}, got {tuple(array.shape)}; "
                                 "check image.size and image.layout in model.yaml")
            if array.dtype != dtype:
                raise ModelError(f"axmodel input {name!r} needs {dtype}, got {array.dtype}; "
                                 "check image.dtype in model.yaml")
            prepared[name] = np.ascontiguousarray(array)
        with self._lock:
            outputs = self._session.run(self._outputs, prepared)
            # Copy while still holding the lock: older runtimes reuse the buffers.
            copies = [np.array(o, copy=True) for o in outputs]
        return dict(zip(self._outputs, copies))

    def input_names(self) -> list[str]:
        return list(self._inputs)

    def close(self) -> None:
        self._session = None
