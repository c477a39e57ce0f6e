"""nasclip-query as a person and a script use it: output forms, filters, exit codes, messages."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    DaemonProcess,
    Scene,
    make_scenes,
    wait_until,
    write_config,
    write_scene,
)
from PIL import Image

ODD_NAMES = [b"caf\xe9 latin-1.jpg", "new\nline.jpg".encode(), "日本 の 写真.jpg".encode()]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasclip.cli.query", *args], capture_output=True, cwd=ROOT,
                          input=stdin, timeout=60)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    photos, more = base / "photos", base / "more"
    make_scenes(photos / "2023", 10, seed=31)
    make_scenes(more, 4, seed=32)
    for i, name in enumerate(ODD_NAMES):
        write_scene(Path(os.fsdecode(bytes(photos) + b"/" + name)), Scene("red", "circle", "blue"), seed=40 + i)
    config = write_config(base / "nasclip.yaml", {"photos": photos, "more": more})
    process = DaemonProcess(config).start()
    wait_until(lambda: process.status()["photos"]["indexed"] == 17, 60, interval=0.2, what="indexing")
    yield process, base
    process.stop()


def test_human_output_lists_rank_score_path(daemon) -> None:
    process, _ = daemon
    done = run("-s", str(process.socket), "-k", "3", "a", "red", "circle")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 3
    for rank, text in enumerate(lines, 1):
        assert re.fullmatch(rf"\s*{rank}  -?\d\.\d{{3}}  /.+\.jpg", text), text
    # The same search through --config finds the socket by itself.
    assert run("-c", str(process.config_path), "-k", "3", "a red circle").stdout == done.stdout


def test_json_output(daemon) -> None:
    process, base = daemon
    done = run("-s", str(process.socket), "--json", "-k", "100", "--share", "more", "blue square")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["model"] and len(reply["results"]) == 4
    for result in reply["results"]:
        assert set(result) == {"path", "share", "score", "size", "mtime", "taken", "taken_from", "camera", "id"}
        assert result["share"] == "more" and result["taken_from"] in ("exif", "mtime")
        assert Path(result["path"]).stat().st_size == result["size"]
    scores = [r["score"] for r in reply["results"]]
    assert scores == sorted(scores, reverse=True)


def test_paths_nul_separated_survive_odd_names_and_xargs(daemon) -> None:
    process, base = daemon
    done = run("-s", str(process.socket), "--paths", "-0", "-k", "1000", "--in", str(base / "photos"), "red circle")
    assert done.returncode == 0, done.stderr
    found = done.stdout.split(b"\0")
    assert found[-1] == b""  # every path ends with NUL
    expected = {bytes(base / "photos") + b"/" + n for n in ODD_NAMES}
    assert expected <= set(found[:-1]) and len(found) == 14
    # The exact bytes go through xargs -0 to a command that opens every file.
    piped = subprocess.run(f"{sys.executable} -m nasclip.cli.query -s {process.socket} --paths -0 -k 1000 "
                           f"--in {base / 'photos'} red circle | xargs -0 cat | wc -c", shell=True,
                           capture_output=True, cwd=ROOT, timeout=60)
    total = sum(os.stat(p).st_size for p in found[:-1])
    assert int(piped.stdout) == total, piped.stderr

    lines = run("-s", str(process.socket), "--paths", "-k", "2", "--share", "more", "a star").stdout
    assert len(lines.splitlines()) == 2 and all(p.startswith(bytes(base / "more")) for p in lines.splitlines())


def test_filters_and_empty_results(daemon) -> None:
    process, base = daemon
    done = run("-s", str(process.socket), "--paths", "-k", "1000", "--in", str(base / "photos" / "2023"), "x")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 10
    # The folder given through a symlink (as getcwd() reports it) still matches the configured share path.
    link = base / "photos-link"
    if not link.exists():
        link.symlink_to(base / "photos")
    done = run("-s", str(process.socket), "--paths", "-k", "1000", "--in", str(link / "2023"), "x")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 10
    assert all(p.startswith(bytes(base / "photos" / "2023")) for p in done.stdout.splitlines())
    done = run("-s", str(process.socket), "--after", "2999-01-01", "red circle")
    assert done.returncode == 0 and done.stdout == b"" and b"no matching photos" in done.stderr
    like = next((base / "more").iterdir())
    done = run("-s", str(process.socket), "--json", "-k", "1", "--like", str(like))
    assert done.returncode == 0 and json.loads(done.stdout)["results"][0]["path"] == str(like)


def test_refusals_and_usage_errors(daemon) -> None:
    process, base = daemon
    sock = str(process.socket)
    done = run("-s", sock, "--share", "nope", "x")
    assert done.returncode == 1 and b"no share named 'nope'" in done.stderr
    done = run("-s", sock, "--like", str(base / "missing.jpg"))
    assert done.returncode == 1 and b"no such photo" in done.stderr
    done = run("-s", sock, "--after", "last tuesday", "x")
    assert done.returncode == 1 and b"'after' must be a date" in done.stderr
    for args, message in [((), b"give some text"), (("-0", "x"), b"-0 goes with --paths"),
                          (("-k", "ten", "x"), b"invalid int"), (("-", "people"), b"every term is subtracted"),
                          (("--json", "--paths", "x"), b"not allowed with")]:
        done = run("-s", sock, *args)
        assert done.returncode == 64 and message in done.stderr, (args, done.stderr)
    assert run("-s", sock, "-k", "5000", "x").returncode == 1


def test_daemon_down_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    done = run("-s", str(tmp_path / "nothing.sock"), "red circle")
    assert done.returncode == 2 and done.stdout == b""
    assert b"nasclipd is not running: no socket at" in done.stderr
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_over:
        left_over.bind(str(stale))  # a socket file nobody listens on, as after a crash
    done = run("-s", str(stale), "red circle")
    assert done.returncode == 2 and b"nothing answers on" in done.stderr
    assert b"Traceback" not in done.stderr


def test_help_documents_exit_codes() -> None:
    done = run("--help")
    assert done.returncode == 0
    text = done.stdout.decode()
    for code in ("0", "1", "2", "3", "64"):
        assert re.search(rf"^\s+{code}\s+\w", text, re.M), code
    assert "--paths -0 | xargs -0" in text


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])


def test_html_page_embeds_thumbnails_linking_to_the_files(daemon, tmp_path: Path) -> None:
    process, base = daemon
    page = tmp_path / "page.html"
    done = run("-s", str(process.socket), "--html", str(page), "-k", "1000", "--in", str(base / "photos"),
               "red circle")
    assert done.returncode == 0 and b"wrote 13 results" in done.stderr
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    reply = process.request(op="search", text="red circle", k=1000, path_prefix=str(base / "photos"))
    assert parser.links == [Path(r["path"]).as_uri() for r in reply["results"]]
    assert "file://" + str(base / "photos") + "/caf%E9%20latin-1.jpg" in parser.links  # the exact bytes
    assert len(parser.images) == 13
    for src in parser.images:
        assert src.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) <= 320 and min(thumb.size) > 10


def test_the_plain_search_path_imports_only_what_it_needs(daemon) -> None:
    # Every import costs a search from the shell start-up time (issue 15: at most
    # 60 ms above the socket round trip): no numpy, Pillow, ONNX Runtime, and
    # with --socket not even YAML or the config machinery.
    process, _ = daemon
    probe = ("import sys, runpy\n"
             "sys.argv = ['nasclip-query', '-s', sys.argv[1], '-k', '2', 'a red circle']\n"
             "try:\n    runpy.run_module('nasclip.cli.query', run_name='__main__')\n"
             "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
             "heavy = {'numpy', 'PIL', 'onnxruntime', 'yaml', 'nasclip.config', 'sqlite3', 'typing', 'dataclasses',\n"
             "         'shutil'}\n"
             "print(sorted(heavy & set(sys.modules)), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(process.socket)], capture_output=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.decode().splitlines()) == 2
    assert done.stderr.decode().strip().splitlines()[-1] == "[]"
    # With a config file, its socket setting is read with YAML, and only that.
    done = run("-c", str(process.config_path), "-k", "2", "a red circle")
    assert done.returncode == 0 and len(done.stdout.decode().splitlines()) == 2
