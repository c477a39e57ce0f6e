"""Installing models: resumable verified downloads, atomic activation, offline installs, the CLI.

Downloads come from a real HTTP server on 127.0.0.1 started here. It serves
files this test makes (a tiny but real ONNX model pair and a WordPiece
vocabulary, laid out like a Hugging Face repository), honours Range
requests, and can cut a connection in the middle of a file.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_tokenizers import WORDPIECE

from nasclip.cli import models as model_admin
from nasclip.cli.admin import main as admin_main
from nasclip.errors import DownloadError, ModelError
from nasclip.indexing.encoder import Encoder
from nasclip.model.download import Progress, Staging
from nasclip.model.install import (
    install_from_registry,
    install_from_source,
    partial_size,
)
from nasclip.model.registry import parse_registry
from nasclip.model.spec import load_model_spec

REPO = "acme/tiny-clip/resolve/main"
PATHS = {"image.onnx": f"{REPO}/visual/model.onnx", "text.onnx": f"{REPO}/textual/model.onnx",
         "vocab.txt": f"{REPO}/vocab.txt"}
DIM, SIZE, CONTEXT = 8, 8, 6


def tiny_onnx_files() -> dict[str, bytes]:
    """A real image/text ONNX pair (linear maps) and a vocab.txt, as bytes."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    image_w = numpy_helper.from_array(rng.standard_normal((3 * SIZE * SIZE, DIM)).astype(np.float32) * 0.1, "w")
    image = helper.make_graph(
        [helper.make_node("Flatten", ["pixel_values"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["image_embeds"])], "image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", DIM])], [image_w])
    # Enough weight to make the file ~50 kB, so a connection can be cut in its middle.
    text_w = numpy_helper.from_array(rng.standard_normal((CONTEXT, 2048)).astype(np.float32), "w")
    text_p = numpy_helper.from_array(rng.standard_normal((2048, DIM)).astype(np.float32) * 0.01, "p")
    text = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
         helper.make_node("MatMul", ["ids", "w"], ["hidden"]),
         helper.make_node("MatMul", ["hidden", "p"], ["text_embeds"])], "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", CONTEXT])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", DIM])], [text_w, text_p])

    def serialise(graph) -> bytes:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model.SerializeToString()

    return {"image.onnx": serialise(image), "text.onnx": serialise(text),
            "vocab.txt": ("\n".join(WORDPIECE) + "\n").encode("utf-8")}


FILES = tiny_onnx_files()
MANIFEST = {
    "format": 1, "id": "tiny-clip", "embedding_dim": DIM,
    "image": {"onnx": "image.onnx", "input_name": "pixel_values", "output_name": "image_embeds",
              "size": SIZE, "resize": "squash"},
    "text": {"onnx": "text.onnx", "tokenizer": "vocab.txt", "context_length": CONTEXT, "pad_id": 0,
             "input_name": "input_ids", "output_name": "text_embeds"},
}


@dataclass
class FileServer:
    """HTTP/1.1 file server on 127.0.0.1 with Range support and scripted connection cuts."""

    files: dict[str, bytes]
    cuts: dict[str, list[int]] = field(default_factory=dict)  # path -> bytes to send before dropping, per request
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    honour_range: bool = True

    def start(self) -> "FileServer":
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                wanted = self.headers.get("Range")
                state.requests.append((path, wanted))
                data = state.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if wanted and state.honour_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = state.cuts.get(path)
                if cut:
                    body = body[:cut.pop(0)]
                    self.close_connection = True  # drop the connection mid-file
                self.wfile.write(body)
                state.bytes_sent[path] = state.bytes_sent.get(path, 0) + len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    served = FileServer({PATHS[name]: data for name, data in FILES.items()}).start()
    yield served
    served.stop()


def registry_text(server: FileServer, name: str = "tiny-clip", verified: bool = True) -> str:
    files = []
    for local, path in PATHS.items():
        item = {"name": local, "url": server.url(path)}
        if verified:
            item.update(size=len(FILES[local]), sha256=hashlib.sha256(FILES[local]).hexdigest())
        files.append(item)
    entry = {"name": name, "description": "A tiny CLIP-shaped model for tests.", "languages": ["zh"],
             "hardware": "cpu", "source": server.url(REPO), "files": files, "manifest": MANIFEST}
    return yaml.safe_dump({"format": 1, "models": [entry]}, allow_unicode=True)


def entry_for(server: FileServer, verified: bool = True):
    return parse_registry(registry_text(server, verified=verified), Path("test-registry.yaml")).models[0]


def assert_runs(folder: Path) -> None:
    """The installed folder loads the way the daemon loads a model, and encodes."""
    encoder = Encoder.open(load_model_spec(folder), backend="onnx", threads=1)
    try:
        texts = encoder.encode_texts(["金色头发的小姐姐", "red circle"])
        images = encoder.encode_images(np.zeros((2, 3, SIZE, SIZE), np.float32) + 0.5)
    finally:
        encoder.close()
    assert texts.shape == (2, DIM) and images.shape == (2, DIM)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)


def assert_no_model(target: Path) -> None:
    assert not target.exists()
    with pytest.raises(ModelError):
        load_model_spec(target)


def test_interrupted_download_resumes_with_a_range_request_and_completes(server: FileServer, tmp_path: Path) -> None:
    server.cuts[PATHS["text.onnx"]] = [20_000]
    log = io.StringIO()
    target = install_from_registry(entry_for(server), tmp_path / "models" / "tiny-clip", backoff=0, stream=log)
    text_requests = [r for path, r in server.requests if path == PATHS["text.onnx"]]
    assert text_requests == [None, "bytes=20000-"]
    assert server.bytes_sent[PATHS["text.onnx"]] == len(FILES["text.onnx"]), "resumed, not downloaded twice"
    for name, data in FILES.items():
        assert (target / name).read_bytes() == data
    assert "published" in (target / "install.yaml").read_text()
    assert "(100%)" in log.getvalue() and "resuming at 20.0 kB" in log.getvalue()
    assert [p.name for p in target.parent.iterdir()] == ["tiny-clip"], "no staging or lock left behind"
    assert_runs(target)


def test_a_failed_download_leaves_no_model_and_the_next_run_resumes(server: FileServer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    server.cuts[PATHS["text.onnx"]] = [20_000, 15_000]
    models = tmp_path / "models"
    target = models / "tiny-clip"
    with pytest.raises(DownloadError) as info:
        install_from_registry(entry_for(server), target, retries=1, backoff=0, stream=io.StringIO())
    message = str(info.value)
    assert "text.onnx" in message and server.url(PATHS["text.onnx"]) in message
    assert "run the same command again to resume" in message
    assert_no_model(target)
    assert partial_size(models, "tiny-clip") == len(FILES["image.onnx"]) + 35_000
    monkeypatch.setattr(model_admin, "load_registry", lambda: parse_registry(registry_text(server), Path("r")))
    assert admin_main(["models", "list", "--models-dir", str(models)]) == 0
    assert re.search(r"tiny-clip .*\n +partial download \(.*\); run install again to resume", capsys.readouterr().out)

    server.requests.clear()
    install_from_registry(entry_for(server), target, backoff=0, stream=io.StringIO())
    assert [r for p, r in server.requests if p == PATHS["text.onnx"]] == ["bytes=35000-"]
    assert [p for p, _ in server.requests if p == PATHS["image.onnx"]] == [], "complete files are not fetched again"
    assert_runs(target)


def test_resume_without_published_sizes_and_from_servers_that_ignore_range(server: FileServer,
                                                                           tmp_path: Path) -> None:
    target = tmp_path / "models" / "tiny-clip"
    server.cuts[PATHS["vocab.txt"]] = [50]
    with pytest.raises(DownloadError):
        install_from_registry(entry_for(server, verified=False), target, allow_unverified=True, retries=0,
                              stream=io.StringIO())
    # Next run: the complete files are answered 416 (nothing left to send), the partial one resumes.
    server.requests.clear()
    install_from_registry(entry_for(server, verified=False), target, allow_unverified=True, stream=io.StringIO())
    assert server.requests == [(PATHS["image.onnx"], f"bytes={len(FILES['image.onnx'])}-"),
                               (PATHS["text.onnx"], f"bytes={len(FILES['text.onnx'])}-"),
                               (PATHS["vocab.txt"], "bytes=50-")]
    assert_runs(target)

    # A server that ignores Range answers 200 with the whole file: the download starts over, correctly.
    server.honour_range = False
    server.cuts[PATHS["text.onnx"]] = [30_000]
    again = install_from_registry(entry_for(server), tmp_path / "models" / "again", backoff=0, stream=io.StringIO())
    assert (again / "text.onnx").read_bytes() == FILES["text.onnx"]


def test_two_installs_of_one_model_cannot_run_at_once(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "models" / "tiny-clip"
    with Staging(target):
        with pytest.raises(ModelError, match="another nasclip is installing or removing tiny-clip"):
            install_from_registry(entry_for(server), target, stream=io.StringIO())
    assert server.requests == []
    install_from_registry(entry_for(server), target, stream=io.StringIO())
    assert_runs(target)


def test_a_corrupted_file_is_rejected_naming_the_file_and_both_hashes(server: FileServer, tmp_path: Path) -> None:
    good = FILES["text.onnx"]
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    server.files[PATHS["text.onnx"]] = bytes(bad)
    target = tmp_path / "models" / "tiny-clip"
    with pytest.raises(DownloadError) as info:
        install_from_registry(entry_for(server), target, backoff=0, stream=io.StringIO())
    message = str(info.value)
    assert "text.onnx" in message and server.url(PATHS["text.onnx"]) in message
    assert f"expected {hashlib.sha256(good).hexdigest()}" in message
    assert f"got {hashlib.sha256(bad).hexdigest()}" in message
    assert_no_model(target)
    assert not (target.parent / ".tiny-clip.partial" / "text.onnx").exists(), "corrupt bytes are not kept to resume"


@pytest.mark.parametrize("change", ["longer", "shorter"])
def test_a_file_of_the_wrong_size_is_rejected(server: FileServer, tmp_path: Path, change: str) -> None:
    data = FILES["image.onnx"]
    server.files[PATHS["image.onnx"]] = data + b"\0" * 100 if change == "longer" else data[:-100]
    target = tmp_path / "models" / "tiny-clip"
    with pytest.raises(DownloadError, match=rf"image\.onnx: .* has {len(server.files[PATHS['image.onnx']])} bytes "
                                            rf"but the registry says {len(data)}"):
        install_from_registry(entry_for(server), target, backoff=0, stream=io.StringIO())
    assert_no_model(target)


def write_config(tmp_path: Path, model: Path) -> Path:
    (tmp_path / "photos").mkdir(exist_ok=True)
    config = tmp_path / "nasclip.yaml"
    config.write_text(yaml.safe_dump({"shares": [{"name": "photos", "path": str(tmp_path / "photos")}],
                                      "model": str(model), "state_dir": str(tmp_path / "state")}))
    return config


def test_cli_unverified_install_records_checksums_that_verify_and_remove_use(
        server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(model_admin, "load_registry",
                        lambda: parse_registry(registry_text(server, verified=False), Path("r")))
    target = tmp_path / "state" / "models" / "tiny-clip"
    config = str(write_config(tmp_path, target))
    assert admin_main(["--config", config, "models", "install", "tiny-clip"]) != 0
    assert "--allow-unverified" in capsys.readouterr().err
    assert_no_model(target)

    assert admin_main(["--config", config, "models", "install", "tiny-clip", "--allow-unverified"]) == 0
    out, err = capsys.readouterr()
    assert f"\nmodel: {target}\n" in out, "prints the config line, with <state_dir>/models/<name>"
    assert "(100%)" in err, "progress goes to stderr"
    sums = (target / "SHA256SUMS").read_text()
    assert f"{hashlib.sha256(FILES['text.onnx']).hexdigest()}  text.onnx" in sums
    assert "recorded at install" in (target / "install.yaml").read_text()
    assert_runs(target)

    assert admin_main(["--config", config, "models", "list"]) == 0
    assert re.search(r"tiny-clip +zh +cpu .*\n +installed \(8-d, id tiny-clip, checksums recorded at install .*"
                     r"\[in use\]", capsys.readouterr().out)
    assert admin_main(["--config", config, "models", "verify"]) == 0
    assert "tiny-clip: ok" in capsys.readouterr().out

    with open(target / "text.onnx", "ab") as handle:
        handle.write(b"\0")
    assert admin_main(["--config", config, "models", "verify", "tiny-clip"]) == 1
    out = capsys.readouterr().out
    assert f"text.onnx: SHA-256 mismatch: expected {hashlib.sha256(FILES['text.onnx']).hexdigest()}" in out
    assert "tiny-clip: FAILED" in out

    assert admin_main(["--config", config, "models", "remove", "tiny-clip"]) != 0
    assert "the config uses" in capsys.readouterr().err
    assert admin_main(["--config", config, "models", "remove", "tiny-clip", "--force"]) == 0
    assert not target.exists() and list(target.parent.iterdir()) == []


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an offline install touched the network")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_install_from_a_folder_of_hand_downloaded_files_and_from_a_tarball(
        server: FileServer, tmp_path: Path, no_network: None) -> None:
    entry = entry_for(server)
    # Files as someone fetched them from the repository, in its layout.
    loose = tmp_path / "downloads"
    for name, path in PATHS.items():
        (loose / path.split("/resolve/main/")[1]).parent.mkdir(parents=True, exist_ok=True)
        (loose / path.split("/resolve/main/")[1]).write_bytes(FILES[name])
    first = install_from_source(loose, tmp_path / "models" / "tiny-clip", entry, stream=io.StringIO())
    assert "published" in (first / "install.yaml").read_text()
    assert_runs(first)

    # The installed folder, packed as a .tar.gz with a top-level folder, installs under another name.
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(first, arcname="tiny-clip")
    assert admin_main(["models", "install", "copy", "--from", str(archive),
                       "--models-dir", str(tmp_path / "models")]) == 0
    second = tmp_path / "models" / "copy"
    assert (second / "SHA256SUMS").read_text() == (first / "SHA256SUMS").read_text()
    assert "source SHA256SUMS" in (second / "install.yaml").read_text()
    assert_runs(second)


def test_offline_sources_are_checked_before_anything_is_installed(
        server: FileServer, tmp_path: Path, no_network: None) -> None:
    folder = install_from_source(_loose_files(tmp_path), tmp_path / "models" / "good", entry_for(server),
                                 stream=io.StringIO())
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for item in folder.iterdir():
        (damaged / item.name).write_bytes(item.read_bytes())
    with open(damaged / "image.onnx", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\xff\xff")
    with pytest.raises(DownloadError, match=r"damaged/image\.onnx: SHA-256 mismatch: expected [0-9a-f]{64}, got"):
        install_from_source(damaged, tmp_path / "models" / "damaged", None, stream=io.StringIO())
    assert_no_model(tmp_path / "models" / "damaged")

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"boom"))
    with pytest.raises(ModelError, match="evil.tar.gz: refusing to unpack"):
        install_from_source(evil, tmp_path / "models" / "evil", None, stream=io.StringIO())
    assert not (tmp_path / "models" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert_no_model(tmp_path / "models" / "evil")

    (tmp_path / "nomanifest").mkdir()
    with pytest.raises(ModelError, match="has no model.yaml, and whatever is not a model in the registry"):
        install_from_source(tmp_path / "nomanifest", tmp_path / "models" / "whatever", None, stream=io.StringIO())


def _loose_files(tmp_path: Path) -> Path:
    folder = tmp_path / "loose"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    return folder


def test_a_manifest_that_does_not_fit_the_onnx_files_is_not_activated(server: FileServer, tmp_path: Path) -> None:
    text = registry_text(server).replace("input_name: pixel_values", "input_name: image")
    entry = parse_registry(text, Path("r")).models[0]
    target = tmp_path / "models" / "tiny-clip"
    with pytest.raises(ModelError, match=r"image\.onnx: has no input 'image' \(it has pixel_values\)"):
        install_from_registry(entry, target, backoff=0, stream=io.StringIO())
    assert_no_model(target)


def test_registry_mistakes_are_reported_with_their_lines(server: FileServer) -> None:
    text = registry_text(server).replace("tokenizer: vocab.txt", "tokenizer: vocab2.txt")
    text = text.replace("hardware: cpu", "hardware: gpu")
    with pytest.raises(ModelError) as info:
        parse_registry(text, Path("reg.yaml"))
    message = str(info.value)
    assert re.search(r"reg\.yaml:\d+: models\[0\]\.hardware: 'gpu' is not allowed", message)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TTYBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_tty_and_periodic_lines_in_a_log() -> None:
    clock = FakeClock()
    tty = TTYBuffer()
    bar = Progress("image.onnx", 10_000_000, tty, clock=clock)
    bar.start(0)
    clock.now += 1
    bar.update(2_500_000)
    bar.finish(10_000_000)
    drawn = tty.getvalue()
    assert "\r" in drawn and "[######..................] 2.5 MB of 10.0 MB (25%), 2.5 MB/s, 3 s left" in drawn
    assert drawn.endswith("(100%) in 1.0 s, 10.0 MB/s\n")

    clock = FakeClock()
    log = io.StringIO()
    lines = Progress("text.onnx", 10_000_000, log, interval=10, clock=clock)
    lines.start(4_000_000)
    for second in range(1, 21):
        clock.now += 1
        lines.update(4_000_000 + second * 250_000)
    lines.finish(10_000_000)
    text = log.getvalue().splitlines()
    assert text[0] == "text.onnx: downloading (10.0 MB, resuming at 4.0 MB)"
    assert text[1:3] == ["text.onnx: 6.5 MB of 10.0 MB (65%), 250.0 kB/s, 14 s left",
                         "text.onnx: 9.0 MB of 10.0 MB (90%), 250.0 kB/s, 4 s left"]
    assert text[3].startswith("text.onnx: done, 10.0 MB (100%)") and "\r" not in log.getvalue()
