"""`nasclip models export --open-clip`: an open_clip ViT-B/32 becomes a folder nasclip runs as open_clip does.

The checkpoint is the architecture-exact open_clip ViT-B-32 with random
weights, as ``open_clip.create_model("ViT-B-32")`` builds it, exported with
exactly ``nasclip models export --open-clip ViT-B-32 --weights FILE OUT``:
the same graph, the same tokenizer and the same preprocessing contract real
weights get, so what holds here holds for them. OpenAI's weights need
QuickGELU (``--pretrained openai``): that export is checked too. open_clip itself is the oracle throughout: its
tokenizer for the ids, its encode_image/encode_text (with its own
preprocess transform) for the vectors, and its cosine for the daemon's
scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, DaemonProcess, make_scenes, write_config
from PIL import Image
from textcorpus import corpus

from nasclip.indexing.encoder import Encoder
from nasclip.indexing.tokenizer import TextTokenizer
from nasclip.model.reference import import_torch, open_clip
from nasclip.model.spec import load_model_spec

torch = import_torch()
oc = open_clip()

ARCH = "ViT-B-32"
TEXTS = ["a photo of a cat", "a red circle on a blue background", "金色头发的小姐姐", "grandma's 80th &amp; cake!!",
         "photo " * 90]


@pytest.fixture(scope="module")
def reference() -> object:
    """The PyTorch model the checkpoint holds; open_clip's own."""
    torch.manual_seed(14)
    return oc.create_model(ARCH, pretrained=None).eval()


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "vit-b-32.pt"
    torch.save(reference.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "vit-b32-random"
    done = run_cli("models", "export", "--open-clip", ARCH, "--weights", str(checkpoint), str(out))
    assert done.returncode == 0, done.stderr
    # ViT-B-32's weights differ in activation: without --pretrained the user is told which need it.
    assert "no --pretrained" in done.stderr and "openai" in done.stderr
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasclip.cli.admin", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def open_clip_text(model, texts: list[str]) -> np.ndarray:
    with torch.no_grad():
        return unit(model.encode_text(oc.tokenize(texts)).numpy())


def open_clip_images(model, paths: list[Path]) -> np.ndarray:
    _, _, preprocess = oc.create_model_and_transforms(ARCH, pretrained=None)
    pixels = torch.stack([preprocess(Image.open(p)) for p in paths])
    with torch.no_grad():
        return unit(model.encode_image(pixels).numpy())


def test_the_folder_carries_open_clips_contract(exported: Path) -> None:
    spec = load_model_spec(exported)
    assert {p.name for p in exported.iterdir()} >= {"image.onnx", "text.onnx", "tokenizer.json", "model.yaml",
                                                     "SHA256SUMS", "install.yaml"}
    assert spec.embedding_dim == 512 and spec.image.size == 224 and spec.image.resize == "crop"
    assert spec.image.mean == pytest.approx(oc.OPENAI_DATASET_MEAN)
    assert spec.image.std == pytest.approx(oc.OPENAI_DATASET_STD)
    assert spec.text.context_length == 77 and spec.text.pad_id == 0 and spec.text.normalize == ("clean",)
    assert spec.text.trim, "causal attention: ids are cut after the longest text"
    assert spec.languages == ("en",)
    assert not any(p.name.startswith(".") for p in exported.parent.iterdir()), "no staging left behind"


def test_clip_bpe_of_the_exported_folder_equals_open_clip_tokenize(exported: Path) -> None:
    texts = corpus(2400)
    ours, _ = TextTokenizer(load_model_spec(exported)).encode(texts)
    theirs = oc.tokenize(texts).numpy()
    bad = [t for t, a, b in zip(texts, ours, theirs) if not np.array_equal(a, b)]
    assert len(texts) >= 2000 and bad == []


def test_models_tokenize_json_gives_open_clips_ids(exported: Path) -> None:
    done = run_cli("models", "tokenize", "--json", str(exported), *TEXTS)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["context_length"] == 77 and [t["text"] for t in reply["texts"]] == TEXTS
    for row, expected in zip(reply["texts"], oc.tokenize(TEXTS).numpy()):
        end = int(np.argmax(expected == 49407))  # the ids up to <|endoftext|>; padding is not listed
        assert row["ids"] == expected[:end + 1].tolist()
    human = run_cli("models", "tokenize", str(exported), "a photo of a cat")
    assert human.returncode == 0 and "7 tokens" in human.stdout and "49406" in human.stdout


def test_models_embed_json_gives_open_clips_vectors(exported: Path, reference, tmp_path: Path) -> None:
    scenes = sorted(make_scenes(tmp_path / "photos", 6, seed=14, size=(640, 480)))
    png = tmp_path / "photos" / "wide.png"
    Image.open(scenes[0]).resize((900, 300)).save(png)
    paths = [*scenes, png]
    args = ["models", "embed", "--json", str(exported)]
    for text in TEXTS:
        args += ["--text", text]
    for path in paths:
        args += ["--image", str(path)]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["dim"] == 512 and [r["path"] for r in reply["images"]] == [str(p) for p in paths]
    texts = np.array([r["vector"] for r in reply["texts"]])
    images = np.array([r["vector"] for r in reply["images"]])
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    # Texts: the same ids through the same graph, so equal to float rounding.
    assert np.abs(texts - open_clip_text(reference, TEXTS)).max() <= 1e-4
    # Images: nasclip decodes (reduced-scale JPEG) and resizes on its own, so
    # close rather than equal; the image parity tests measure this on real photos.
    cosines = (images * open_clip_images(reference, paths)).sum(axis=1)
    assert cosines.min() >= 0.99, cosines


def test_a_missing_file_is_named(exported: Path, tmp_path: Path) -> None:
    done = run_cli("models", "embed", str(exported), "--image", str(tmp_path / "nope.jpg"))
    assert done.returncode != 0 and "nope.jpg: cannot open it" in done.stderr
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    done = run_cli("models", "embed", str(exported), "--image", str(bad))
    assert done.returncode != 0 and "bad.jpg" in done.stderr and "Traceback" not in done.stderr


def test_export_refuses_what_it_cannot_make_right(checkpoint: Path, tmp_path: Path) -> None:
    done = run_cli("models", "export", "--open-clip", ARCH, "--weights", str(checkpoint), "--pretrained", "nope",
                   str(tmp_path / "a"))
    assert done.returncode != 0 and "no weights 'nope' for ViT-B-32" in done.stderr and "openai" in done.stderr
    # Weights of another architecture.
    done = run_cli("models", "export", "--open-clip", "ViT-B-16", "--weights", str(checkpoint),
                   "--pretrained", "openai", str(tmp_path / "b"))
    assert done.returncode != 0 and "ViT-B-16" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("models", "export", "--open-clip", "ViT-Nope", "--weights", str(checkpoint), str(tmp_path / "c"))
    assert done.returncode != 0 and "no architecture 'ViT-Nope'" in done.stderr
    assert not any(tmp_path.iterdir()), "nothing is written when the export is refused"


def test_the_daemon_scores_as_open_clip_does(exported: Path, reference, tmp_path: Path) -> None:
    share = tmp_path / "photos"
    scenes = sorted(make_scenes(share, 8, seed=15, size=(800, 600)))
    config = write_config(tmp_path / "nasclip.yaml", {"photos": share}, model=str(exported))
    daemon = DaemonProcess(config).start()
    try:
        daemon.wait_idle(timeout=180)
        query = "a red circle on a blue background"
        done = subprocess.run([sys.executable, "-m", "nasclip.cli.query", "-s", str(daemon.socket), "--json",
                               "-k", "100", query], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        scores = {Path(r["path"]): r["score"] for r in json.loads(done.stdout)["results"]}
    finally:
        daemon.stop()
    assert set(scores) == set(scenes)
    theirs = open_clip_images(reference, scenes) @ open_clip_text(reference, [query])[0]
    ours = np.array([scores[p] for p in scenes])
    assert np.abs(ours - theirs).max() <= 0.01, (ours, theirs)


def test_openai_weights_export_with_quick_gelu(tmp_path: Path, reference) -> None:
    # --pretrained openai: the graph takes QuickGELU, as OpenAI's weights were trained with.
    torch.manual_seed(15)
    quick = oc.create_model(ARCH, pretrained=None, force_quick_gelu=True).eval()
    torch.save(quick.state_dict(), tmp_path / "openai.pt")
    done = run_cli("models", "export", "--open-clip", ARCH, "--weights", str(tmp_path / "openai.pt"),
                   "--pretrained", "openai", str(tmp_path / "out"))
    assert done.returncode == 0 and "no --pretrained" not in done.stderr, done.stderr
    ours = np.array([r["vector"] for r in json.loads(run_cli(
        "models", "embed", "--json", str(tmp_path / "out"), *sum((["--text", t] for t in TEXTS), [])).stdout)["texts"]])
    assert np.abs(ours - open_clip_text(quick, TEXTS)).max() <= 1e-4
    # The same weights in the GELU graph give other vectors: the activation is not a detail.
    gelu = oc.create_model(ARCH, pretrained=None).eval()
    gelu.load_state_dict(quick.state_dict())
    assert np.abs(ours - open_clip_text(gelu, TEXTS)).max() > 1e-3


def test_a_batch_of_mixed_lengths_gives_each_text_open_clips_vector(exported: Path, reference) -> None:
    # One text-encoder run takes many queries' texts; they are grouped by length inside it,
    # and each must still get the vector open_clip gives it alone.
    texts = corpus(64)
    texts[5] = "cat"
    texts[9] = " ".join(["a very long description of a sunny beach with palm trees"] * 5)
    encoder = Encoder.open(load_model_spec(exported), backend="onnx", threads=1, image=False)
    try:
        ours = encoder.encode_texts(texts)
    finally:
        encoder.close()
    theirs = np.concatenate([open_clip_text(reference, [text]) for text in texts])
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
