"""A stand-in for AXERA's pyaxengine (``import axengine``) that enforces its documented constraints.

The NPU runtime cannot exist on a test machine, so this fake runs the
"compiled" model with ONNX Runtime on the CPU: an ``.axmodel`` here is an
ONNX file with fully static shapes (tests build one with
``tests/axmodels.py``). What nasclip must get right is enforced, loudly:

* inputs must match the compiled shape and dtype exactly (no broadcasting,
  no casting, no batch other than the compiled one) and be C-contiguous;
* the batch size is whatever the model was compiled for (usually 1);
* one session must not be run from two threads at once: a second
  concurrent ``run`` raises (the real runtime corrupts its buffers);
* like pyaxengine before 0.1.3, ``run`` returns the session's own output
  buffers, which the next ``run`` overwrites in place: a caller that keeps
  them without copying sees its results change.

Like the real module, importing it is what tells nasclip the NPU exists.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

__version__ = "0.1.2+fake"

#: Seconds each run holds the "NPU", as a real ViT-B/32 run does (~4 ms);
#: long enough that unsynchronised callers collide.
NPU_LATENCY = 0.003

#: Every constraint violation seen, for tests to assert on.
violations: list[str] = []


class NodeArg:
    """Name, static shape and numpy dtype of a model input or output."""

    def __init__(self, name: str, shape: list[int], dtype: np.dtype) -> None:
        self.name = name
        self.shape = shape
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, shape={self.shape}, dtype={self.dtype})"


def _violation(message: str) -> RuntimeError:
    violations.append(message)
    return RuntimeError(f"axengine (fake): {message}")


class InferenceSession:
    """One loaded .axmodel."""

    def __init__(self, path_or_bytes: str | Path, providers: list[str] | None = None, **_: object) -> None:
        import onnxruntime as ort

        path = Path(path_or_bytes)
        if path.suffix != ".axmodel":
            raise RuntimeError(f"axengine (fake): {path} is not an .axmodel")
        if providers is not None and not set(providers) & {"AxEngineExecutionProvider", "AXCLRTExecutionProvider"}:
            raise RuntimeError(f"axengine (fake): unknown providers {providers}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._ort = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = [self._node(i) for i in self._ort.get_inputs()]
        self._outputs = [self._node(o) for o in self._ort.get_outputs()]
        # The runtime owns one buffer per output, reused by every run (< 0.1.3).
        self._buffers = {o.name: np.zeros(o.shape, o.dtype) for o in self._outputs}
        self._busy = threading.Lock()
        self.runs = 0

    @staticmethod
    def _node(arg) -> NodeArg:
        if not all(isinstance(d, int) and d > 0 for d in arg.shape):
            raise RuntimeError(f"axengine (fake): {arg.name} has shape {arg.shape}; "
                               "a compiled axmodel has only static dimensions")
        dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
                 "tensor(int32)": np.int32, "tensor(float16)": np.float16}[arg.type]
        return NodeArg(arg.name, list(arg.shape), np.dtype(dtype))

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def run(self, output_names: list[str] | None, input_feed: dict[str, np.ndarray],
            run_options: object = None) -> list[np.ndarray]:
        if not self._busy.acquire(blocking=False):
            raise _violation("run() called while another run() of this session is in progress")
        try:
            expected = {i.name: i for i in self._inputs}
            if set(input_feed) != set(expected):
                raise _violation(f"inputs {sorted(input_feed)} do not match the model's {sorted(expected)}")
            for name, array in input_feed.items():
                arg = expected[name]
                if not isinstance(array, np.ndarray):
                    raise _violation(f"input {name} is a {type(array).__name__}, not a numpy array")
                if list(array.shape) != arg.shape:
                    raise _violation(f"input {name} has shape {list(array.shape)}, compiled for {arg.shape}")
                if array.dtype != arg.dtype:
                    raise _violation(f"input {name} is {array.dtype}, compiled for {arg.dtype}")
                if not array.flags.c_contiguous:
                    raise _violation(f"input {name} is not C-contiguous")
            names = output_names or [o.name for o in self._outputs]
            started = time.monotonic()
            results = self._ort.run(names, input_feed)
            for name, value in zip(names, results):
                np.copyto(self._buffers[name], value)
            time.sleep(max(0.0, NPU_LATENCY - (time.monotonic() - started)))
            self.runs += 1
            return [self._buffers[name] for name in names]
        finally:
            self._busy.release()
