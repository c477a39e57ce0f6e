"""The reference implementations nasclip exports from and is tested against: open_clip and cn_clip.

Both import torchvision for its transforms. Where torchvision's compiled
operators cannot load beside the installed PyTorch (a torchvision built for
another PyTorch, as on machines that have only a CPU PyTorch wheel), its
import fails while registering fake kernels for ``nms``/``qnms``, operators
neither CLIP package ever calls. Declaring those two schemas first lets the
pure-Python parts (transforms, model code) import; anything that really
needs the compiled operators still fails loudly when it calls them.

Maintainer-time only (``nasclip models export``, tests, benchmarks): the
daemon never imports PyTorch.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ..errors import ModelError

_TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_shim: Any = None  # the torch.library.Library holding the declarations; kept alive on purpose


def import_torch() -> ModuleType:
    """PyTorch, with torchvision importable beside it where it is installed.

    transformers imports torchvision whenever it is present, so every
    maintainer-time import of PyTorch goes through here first.
    """
    import torch

    _import_torchvision()
    return torch


def _import_torchvision() -> ModuleType | None:
    global _shim
    import torch

    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise
        return None
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or _shim is not None:
            raise
    # The failed import left half-initialised modules behind; drop them and retry.
    import sys

    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    _shim = torch.library.Library("torchvision", "DEF")
    for schema in _TORCHVISION_OPS:
        _shim.define(schema)
    return importlib.import_module("torchvision")


def _import(package: str, extra: str) -> ModuleType:
    try:
        import_torch()
        return importlib.import_module(package)
    except ImportError as exc:
        raise ModelError(f"this needs {package} and PyTorch ({exc.name} is missing); install them with "
                         f"pip install 'nasclip[{extra}]'") from None


def open_clip() -> ModuleType:
    """The open_clip package (open-clip-torch)."""
    return _import("open_clip", "export")


def cn_clip() -> ModuleType:
    """Chinese-CLIP's ``cn_clip.clip`` package."""
    return _import("cn_clip.clip", "test")
