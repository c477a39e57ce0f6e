"""Both backends behind one protocol: ONNX Runtime, and pyaxengine through a fake that enforces its rules.

The fake (tests/fakes/axengine) runs a "compiled" copy of the demo model's
image encoder (fixed batch, uint8 NHWC or float NCHW input, see
tests/npu_models.py) with ONNX Runtime, and raises on every documented misuse.
So the same photo can go through both backends and the vectors compared.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL, make_scenes, wait_until
from npu_models import FAKES, compile_image_encoder, npu_model_folder, use_fake_axengine

from nasclip.errors import ModelError
from nasclip.indexing.backends import axengine_available, open_session
from nasclip.indexing.backends.onnx import OnnxSession
from nasclip.indexing.encoder import Encoder
from nasclip.indexing.imaging import load_tensor
from nasclip.model.spec import load_model_spec
from nasclip.store.store import Store

use_fake_axengine()
import axengine  # noqa: E402  (the fake)

CONTRACTS = [("NCHW", "float32", "RGB"), ("NHWC", "uint8", "RGB"), ("NHWC", "uint8", "BGR")]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sorted(make_scenes(tmp_path_factory.mktemp("photos"), 5, seed=4))


@pytest.fixture(scope="module")
def reference(photos: list[Path]) -> np.ndarray:
    """The demo model's vectors for the photos, on ONNX Runtime with its own manifest."""
    encoder = Encoder.open(load_model_spec(DEMO_MODEL), backend="onnx", threads=1, text=False)
    batch = np.stack([load_tensor(p, encoder.spec.image, 10**8) for p in photos])
    return encoder.encode_images(batch)


@pytest.fixture(scope="module")
def npu_models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Path]:
    root = tmp_path_factory.mktemp("npu")
    return {c: npu_model_folder(DEMO_MODEL, root / "-".join(c), layout=c[0], dtype=c[1], channel_order=c[2])
            for c in CONTRACTS}


def encode(folder: Path, backend: str, photos: list[Path]) -> tuple[Encoder, np.ndarray]:
    encoder = Encoder.open(load_model_spec(folder), backend=backend, threads=1, text=False)  # type: ignore[arg-type]
    batch = np.stack([load_tensor(p, encoder.spec.image, 10**8) for p in photos])
    return encoder, encoder.encode_images(batch)


# --------------------------------------------------------------------------- the fake is strict


def test_the_fake_runtime_enforces_the_documented_constraints(npu_models, tmp_path: Path) -> None:
    folder = npu_models[("NHWC", "uint8", "RGB")]
    session = axengine.InferenceSession(str(folder / "image.axmodel"), providers=["AxEngineExecutionProvider"])
    (node,) = session.get_inputs()
    assert node.shape == [1, 224, 224, 3] and node.dtype == np.uint8
    good = np.zeros((1, 224, 224, 3), np.uint8)
    for bad in (np.zeros((2, 224, 224, 3), np.uint8), good.astype(np.float32),
                np.zeros((1, 224, 224, 6), np.uint8)[..., ::2]):
        with pytest.raises(RuntimeError, match="fake"):
            session.run(None, {node.name: bad})
    # Outputs are the runtime's own buffers: the next run overwrites them.
    first = session.run(None, {node.name: good})[0]
    kept = first.copy()
    session.run(None, {node.name: np.full_like(good, 200)})
    assert not np.array_equal(first, kept)
    # Two threads on one session collide.
    errors: list[Exception] = []
    start = threading.Barrier(2)

    def hammer() -> None:
        start.wait()
        for _ in range(15):
            try:
                session.run(None, {node.name: good})
            except RuntimeError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors and "another run" in str(errors[0])
    # A dynamic batch cannot be an axmodel.
    dynamic = compile_image_encoder(DEMO_MODEL / "image.onnx", tmp_path / "dynamic.axmodel", batch=None)
    with pytest.raises(RuntimeError, match="static"):
        axengine.InferenceSession(str(dynamic))
    axengine.violations.clear()


# --------------------------------------------------------------------------- same photo, same vector


@pytest.mark.parametrize("contract", CONTRACTS, ids=["-".join(c) for c in CONTRACTS])
def test_every_backend_and_input_contract_gives_the_same_vectors(npu_models, photos, reference, contract) -> None:
    folder = npu_models[contract]
    npu, on_npu = encode(folder, "axengine", photos)
    cpu, on_cpu = encode(folder, "onnx", photos)
    assert npu.backend.startswith("axengine") and "batch 1" in npu.backend
    assert cpu.backend.startswith("onnxruntime")
    # Five photos through a batch-1 model: five runs, each result copied before the next.
    assert np.allclose(on_npu, reference, atol=1e-4), "NPU path differs from the demo model"
    assert np.allclose(on_cpu, reference, atol=1e-4), "same contract on ONNX Runtime differs"
    assert len({tuple(np.round(v, 4)) for v in on_npu}) == len(photos), "results overwrote each other"
    assert axengine.violations == []


def test_a_fixed_batch_larger_than_one_is_padded(photos, reference, tmp_path: Path) -> None:
    folder = npu_model_folder(DEMO_MODEL, tmp_path / "b4", layout="NHWC", dtype="uint8", batch=4, with_onnx=False)
    encoder, vectors = encode(folder, "auto", photos)  # 5 photos: one full batch and one padded
    assert "batch 4" in encoder.backend
    assert np.allclose(vectors, reference, atol=1e-4)
    assert axengine.violations == []


def test_concurrent_callers_share_one_npu_session_safely(npu_models, photos, reference) -> None:
    encoder = Encoder.open(load_model_spec(npu_models[("NHWC", "uint8", "RGB")]), backend="axengine",
                           text=False)
    batch = np.stack([load_tensor(p, encoder.spec.image, 10**8) for p in photos])
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(4):
            results.append(encoder.encode_images(batch))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and all(np.allclose(r, reference, atol=1e-4) for r in results)
    assert axengine.violations == []


# --------------------------------------------------------------------------- choosing and failing


def test_auto_picks_the_npu_only_when_it_can_and_says_why(npu_models, caplog, monkeypatch) -> None:
    folder = npu_models[("NHWC", "uint8", "RGB")]
    spec = load_model_spec(folder)
    caplog.set_level(logging.INFO, logger="nasclip.backends")
    assert axengine_available()
    session = open_session(spec.path("image.onnx"), spec.path("image.axmodel"), "auto", announce=True)
    assert session.description.startswith("axengine")
    assert "NPU via axengine (auto: axengine imports and the model has an image.axmodel)" in caplog.text
    session = open_session(spec.path("image.onnx"), None, "auto", announce=True)
    assert isinstance(session, OnnxSession)
    assert "CPU via ONNX Runtime (auto: the model has no image.axmodel)" in caplog.text
    monkeypatch.setitem(sys.modules, "axengine", None)  # as on a machine without the NPU runtime
    assert not axengine_available()
    session = open_session(spec.path("image.onnx"), spec.path("image.axmodel"), "auto", announce=True)
    assert isinstance(session, OnnxSession)
    assert "axengine module (AXERA's NPU runtime) is not installed" in caplog.text
    with pytest.raises(ModelError, match="pyaxengine"):
        open_session(spec.path("image.onnx"), spec.path("image.axmodel"), "axengine")


def test_a_manifest_that_does_not_match_the_compiled_model_is_named(npu_models, photos) -> None:
    folder = npu_models[("NHWC", "uint8", "RGB")]
    text = (folder / "model.yaml").read_text()
    wrong = folder.parent / "wrong"
    wrong.mkdir()
    for entry in folder.iterdir():
        if entry.name != "model.yaml":
            os.symlink(entry, wrong / entry.name)
    (wrong / "model.yaml").write_text(text.replace("layout: NHWC", "layout: NCHW"))
    encoder = Encoder.open(load_model_spec(wrong), backend="axengine", text=False)
    with pytest.raises(ModelError, match=r"needs shape \(1, 224, 224, 3\).*image.layout"):
        encoder.encode_images(load_tensor(photos[0], encoder.spec.image, 10**8)[None])


def test_onnx_providers_fall_back_with_a_warning(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="nasclip.backends")
    session = OnnxSession(DEMO_MODEL / "image.onnx", threads=1,
                          providers=("NoSuchExecutionProvider", "CPUExecutionProvider"))
    assert "CPUExecutionProvider" in session.description
    assert "has no NoSuchExecutionProvider" in caplog.text and "indexer.onnx_providers" in caplog.text


# --------------------------------------------------------------------------- the daemon on the NPU path


def test_the_daemon_indexes_through_the_npu_backend(npu_models, daemon_factory, tmp_path: Path) -> None:
    folder = npu_models[("NHWC", "uint8", "BGR")]
    scenes = make_scenes(tmp_path / "photos", 6, seed=9)
    env = {"PYTHONPATH": os.pathsep.join([str(FAKES), os.environ.get("PYTHONPATH", "")])}
    daemon = daemon_factory({"photos": tmp_path / "photos"}, env=env, model=str(folder))
    status = wait_until(lambda: (s := daemon.status())["photos"]["indexed"] == 6 and s, 60, interval=0.1,
                        what="the scenes to be indexed")
    assert status["model"]["backend"].startswith("axengine")
    assert "image encoder backend: NPU via axengine (auto:" in daemon.log()
    assert daemon.stop() == 0
    # The vectors the daemon stored are the ONNX Runtime vectors of the same photos.
    spec = load_model_spec(folder)
    cpu = Encoder.open(spec, backend="onnx", threads=1, text=False)
    store = Store(tmp_path / "state", spec.id, spec.embedding_dim)
    try:
        for path in scenes:
            row = store.catalog.get("photos", path.name)
            stored = store.index.get(row.id)
            want = cpu.encode_images(load_tensor(path, spec.image, 10**8)[None])[0]
            assert stored is not None and np.allclose(stored, want, atol=1e-4), path.name
    finally:
        store.close()
