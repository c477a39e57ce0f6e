"""nasclip-query: search your photos by describing them.

Exit codes: 0 search done (even with no matches), 1 the daemon refused the
request (bad query, unknown share, ...), 2 the daemon is not running or not
reachable, 3 the socket is not accessible to this user, 64 wrong usage.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from . import __version__
from .client import call, resolve_socket
from .errors import NasclipError

EXIT_REFUSED, EXIT_USAGE = 1, 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's 2 would mean "daemon down" here
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nasclip-query",
        description="Search the photos nasclipd has indexed. Combine terms with + and -, e.g. "
                    "nasclip-query dog + beach - people",
        epilog="exit codes: 0 ok, 1 request refused, 2 daemon not running, 3 socket not accessible, 64 usage")
    parser.add_argument("text", nargs="*", help="what to look for; '+' and '-' between terms add or subtract")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", "-c", help="read the socket path from this nasclip config file")
    where.add_argument("--socket", "-s", help="the daemon's socket (default: $NASCLIP_SOCKET or /run/nasclip/query.sock)")
    parser.add_argument("-k", type=int, default=10, help="number of results (1-1000, default 10)")
    parser.add_argument("--like", metavar="IMAGE", action="append", default=[],
                        help="photos that look like this one (may be repeated; combines with text)")
    parser.add_argument("--in", dest="path_prefix", metavar="PATH", help="only photos below this folder")
    parser.add_argument("--share", help="only photos of this share")
    parser.add_argument("--after", help="only photos modified on or after this date (YYYY-MM-DD)")
    parser.add_argument("--before", help="only photos modified before this date (YYYY-MM-DD)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object with a 'results' list")
    out.add_argument("--paths", action="store_true", help="print only paths, one per line")
    out.add_argument("--html", metavar="FILE", help="write a page of thumbnails linking to the photos")
    parser.add_argument("-0", "--null", action="store_true", help="with --paths: separate paths with NUL (for xargs -0)")
    parser.add_argument("--version", action="version", version=f"nasclip-query {__version__}")
    return parser


def parse_terms(words: list[str], likes: list[str]) -> list[dict]:
    """'dog + beach - people' (as separate words) into weighted terms."""
    terms: list[dict] = []
    sign, current = 1.0, []

    def flush() -> None:
        if current:
            terms.append({"text": " ".join(current), "weight": sign})
            current.clear()

    for word in words:
        if word in ("+", "-"):
            flush()
            sign = 1.0 if word == "+" else -1.0
        else:
            current.append(word)
    flush()
    for image in likes:
        terms.append({"image": str(Path(image).absolute()), "weight": 1.0})
    return terms


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    terms = parse_terms(args.text, args.like)
    if not terms:
        build_parser().error("give some text to search for, or --like IMAGE")
    if args.null and not args.paths:
        build_parser().error("-0 goes with --paths")
    request: dict = {"op": "search", "k": args.k}
    if len(terms) == 1 and terms[0]["weight"] == 1.0:
        request.update({k: v for k, v in terms[0].items() if k != "weight"})
    else:
        request["terms"] = terms
    for key in ("share", "after", "before"):
        if getattr(args, key):
            request[key] = getattr(args, key)
    if args.path_prefix:
        request["path_prefix"] = str(Path(args.path_prefix).absolute())
    try:
        reply = call(resolve_socket(args.socket, args.config), **request)
    except NasclipError as exc:
        print(f"nasclip-query: {exc}", file=sys.stderr)
        return exc.exit_code if exc.exit_code != 1 else EXIT_REFUSED
    results = reply["results"]
    if args.json:
        json.dump({"results": results, "model": reply.get("model"), "took_ms": reply.get("took_ms")},
                  sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif args.paths:
        end = "\0" if args.null else "\n"
        out = sys.stdout.buffer
        for r in results:
            out.write(os.fsencode(r["path"]) + end.encode())
        out.flush()
    elif args.html:
        Path(args.html).write_text(html_page(" ".join(args.text) or "photos like " + ", ".join(args.like),
                                             results), encoding="utf-8")
        print(f"wrote {len(results)} results to {args.html}", file=sys.stderr)
    else:
        if not results:
            print("no matching photos", file=sys.stderr)
        for rank, r in enumerate(results, 1):
            print(f"{rank:3d}  {r['score']:.3f}  {_printable(r['path'])}")
    return 0


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _thumbnail(path: str, size: int = 256) -> str | None:
    """A data: URL of a small JPEG of the photo, or None if it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=80)
    except Exception:  # a photo that cannot be shown still gets its link
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def html_page(title: str, results: list[dict]) -> str:
    """A self-contained page: embedded thumbnails, each linking to its file."""
    cards = []
    for rank, r in enumerate(results, 1):
        path = _printable(r["path"])
        thumb = _thumbnail(r["path"])
        picture = (f'<img src="{thumb}" alt="{html.escape(Path(path).name)}">' if thumb
                   else '<div class="missing">no preview</div>')
        when = datetime.fromtimestamp(r.get("mtime", 0)).strftime("%Y-%m-%d")
        cards.append(
            f'<figure><a href="{html.escape(Path(path).as_uri())}">{picture}</a>'
            f'<figcaption>{rank}. {html.escape(Path(path).name)}<br><small>{r["score"]:.3f} · {when} · '
            f'{html.escape(str(Path(path).parent))}</small></figcaption></figure>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nasclip: {html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; background: #fff; border-radius: 6px; padding: .5rem; box-shadow: 0 1px 3px #0002; }}
img {{ width: 100%; height: 200px; object-fit: contain; background: #eee; }}
.missing {{ height: 200px; display: grid; place-items: center; color: #888; background: #eee; }}
figcaption {{ font-size: .85rem; overflow-wrap: anywhere; }}
</style></head>
<body><h1>{html.escape(title)}</h1><p>{len(results)} photos, best first.</p>
<main>
{chr(10).join(cards)}
</main></body></html>
"""


if __name__ == "__main__":
    sys.exit(main())
