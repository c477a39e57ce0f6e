#!/usr/bin/env python3
"""Web benchmark: GET /api/search at 100k photos, next to the socket's figures in the same run; thumbnails.

    .venv/bin/python bench/bench_web.py                       # the random-weight ViT-B/32 (as bench_query)
    .venv/bin/python bench/bench_web.py --model models/demo --single 100 --concurrent 480

1. Builds the 100k-photo state_dir of bench/bench_query.py (its build_library:
   synthetic clustered vectors, empty files, 200 real rendered photos) and
   starts the real nasclipd on it with the web front end on 127.0.0.1 (its
   start_daemon), the trusted proxy being 127.0.0.1, so that the web user
   `nobody` needs no login (the session path costs one dictionary lookup).
2. Both sides search as the same uid, nobody, so both pay the same access
   checks: the socket clients run in a child process that dropped to
   nobody, the web requests name nobody through the proxy header. A socket
   query opens a new connection, as nasclip-query does; a web client keeps
   its HTTP connection, as a browser does.
3. Single client: new texts (each encoded), then the same texts again
   (cached), socket and web each on a set of texts of their own. Then 16
   clients at once, socket and web in turn, on texts from the same pool.
4. Thumbnails of the 200 real photos: the first request of each (decode,
   resize, write to the cache) and the second (from the cache).

Runs are kept short (a shared 2-core machine: the figures are noisy);
nothing is indexed while it runs. Needs root (to drop to nobody).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket as sockets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_query import build_shares, finish, percentile, real_sized_model, request, say, start_daemon, texts  # noqa: E402

NOBODY = 65534


def free_port() -> int:
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Web:
    """One web client on one kept-alive connection, named nobody by the trusted proxy's header."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                self.conn.request("GET", path, headers={"Remote-User": "nobody"})
                response = self.conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed a connection idle past its keep-alive (5 s): a browser reconnects too.
                self.conn.close()
                if attempt == 2:
                    raise
        body = response.read()
        return time.perf_counter() - started, response.status, body

    def search(self, text: str, k: int = 10) -> tuple[float, str | None]:
        took, status, body = self.get("/api/search?" + urlencode({"q": text, "k": k}))
        if status != 200:
            return took, f"HTTP {status}"
        return took, None if json.loads(body)["results"] else "no results"


def socket_search(path: Path, text: str, k: int = 10) -> tuple[float, str | None]:
    started = time.perf_counter()
    reply = request(path, op="search", text=text, k=k)
    took = time.perf_counter() - started
    if not reply.get("ok"):
        return took, reply["error"]["code"]
    return took, None if reply["results"] else "no results"


def run_clients(search, queries: list[str], clients: int) -> tuple[list[float], list[str]]:  # type: ignore[no-untyped-def]
    """queries spread over clients threads; search(client_state, text) -> (seconds, error)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    todo = list(reversed(queries))

    def client() -> None:
        state: dict = {}
        while True:
            with lock:
                if not todo:
                    return
                text = todo.pop()
            took, error = search(state, text)
            with lock:
                latencies.append(took)
                if error:
                    errors.append(error)
    with ThreadPoolExecutor(clients) as pool:
        for job in [pool.submit(client) for _ in range(clients)]:
            job.result()
    return latencies, errors


def socket_phases(path: Path, new: list[str], mixed: list[str], clients: int) -> dict:
    """The socket's figures, measured in a child process running as nobody; returns {phase: (latencies, errors)}."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            single = [socket_search(path, text) for text in new]
            cached = [socket_search(path, text) for text in new]
            many = run_clients(lambda _, text: socket_search(path, text), mixed, clients)
            out = {"new": ([t for t, _ in single], [e for _, e in single if e]),
                   "cached": ([t for t, _ in cached], [e for _, e in cached if e]), "many": many}
            with os.fdopen(write, "w") as pipe:
                json.dump(out, pipe)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the socket client (as nobody) failed")
    return json.loads(data)


def row(name: str, latencies: list[float], clients: int, errors: list[str]) -> str:
    return (f"{name:<36} {len(latencies):>7} {clients:>7} {len(errors):>6} {percentile(latencies, 50) * 1000:>8.1f} "
            f"{percentile(latencies, 99) * 1000:>8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=150, help="texts in each single-client phase")
    parser.add_argument("--concurrent", type=int, default=640, help="queries in each 16-client phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--model", type=Path, help="model folder (default: bench_query's random-weight ViT-B/32)")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_web needs root: both sides search as the user nobody")
    args.model = (args.model or real_sized_model()).absolute()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nasclip-bench-web-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # nobody must reach the photos (the state_dir inside is made private by nasclipd)
    port = free_port()
    proc = None
    try:
        library, real, incoming = build_shares(work, args.model, args.photos)
        web = {"web": {"listen": f"127.0.0.1:{port}", "trusted_proxy": "127.0.0.1",
                       "max_connections": args.clients * 2 + 8}}
        proc, path = start_daemon(work, args.model, library, incoming, args.clients * 2,
                                  {"socket_mode": "0666"}, web)
        status = request(path, op="status")["status"]
        say(f"nasclipd up: {status['index']['vectors']:,} vectors, model {status['model']['id']}")
        pool = texts(seed=7)
        need = 2 * args.single + 40
        if len(pool) < need:
            raise SystemExit(f"--single {args.single} needs {need} distinct texts; the pool has {len(pool)}")
        socket_new, web_new, warm, rest = (pool[:args.single], pool[args.single:2 * args.single],
                                           pool[2 * args.single:need], pool[need:])
        mixed = [rest[i % len(rest)] for i in range(args.concurrent)]
        client = Web(port)
        for text in warm[:20]:  # first-run allocations, page cache
            socket_search(path, text)
            client.search(text)
        say("socket clients (as nobody) ...")
        sock = socket_phases(path, socket_new, mixed, args.clients)
        say("web clients ...")
        client = Web(port)  # the warm-up connection idled past its keep-alive meanwhile
        web_single = [client.search(text) for text in web_new]
        web_cached = [client.search(text) for text in web_new]
        web_many = run_clients(lambda state, text: state.setdefault("c", Web(port)).search(text), mixed, args.clients)
        say("thumbnails ...")
        real_ids = [r["id"] for r in request(path, op="search", text="a photo", k=len(real),
                                             path_prefix=str(library / "real"))["results"]]
        first = [client.get(f"/api/thumb/{i}") for i in real_ids]
        cached = [client.get(f"/api/thumb/{i}") for i in real_ids]
        thumb_errors = [s for _, s, _ in first + cached if s != 200]
    finally:
        finish(proc, work, keep=args.workdir is not None)

    print()
    print(f"nasclip web bench: {args.photos:,} photos, model {status['model']['id']}, index {status['index']['type']}, "
          f"{os.cpu_count()} cores; both sides as uid nobody (access checks on every result); nothing indexing")
    print(f"{'phase':<36} {'queries':>7} {'clients':>7} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8}")
    print(row("socket, single client, new texts", *sock["new"][:1], 1, sock["new"][1]))
    print(row("web, single client, new texts", [t for t, _ in web_single], 1, [e for _, e in web_single if e]))
    print(row("socket, single client, cached texts", *sock["cached"][:1], 1, sock["cached"][1]))
    print(row("web, single client, cached texts", [t for t, _ in web_cached], 1, [e for _, e in web_cached if e]))
    print(row(f"socket, {args.clients} clients", sock["many"][0], args.clients, sock["many"][1]))
    print(row(f"web, {args.clients} clients", web_many[0], args.clients, web_many[1]))
    print(row("thumbnail, first request (made)", [t for t, _, _ in first], 1, thumb_errors))
    print(row("thumbnail, second request (cached)", [t for t, _, _ in cached], 1, []))
    sizes = [len(body) for _, _, body in first]
    print(f"\nthumbnails: {len(sizes)} of the real rendered photos, {sum(sizes) / max(1, len(sizes)) / 1024:.1f} KiB "
          "on average; a socket query opens a new connection (as nasclip-query), a web client keeps its own")
    failed = sock["new"][1] or sock["cached"][1] or sock["many"][1] or web_many[1] or thumb_errors
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
