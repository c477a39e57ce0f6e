"""nasclip-query: search your photos by describing them.

A thin client of nasclipd's socket (docs/protocol.md). Exit codes are listed
in EXIT_CODES and printed by --help.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .. import __version__
from ..display import clock, parse_clock, printable
from ..errors import DaemonUnavailable, NasclipError, SocketAccessDenied
from ..query.client import RequestFailed, call, resolve_socket
from .common import EXIT_USAGE, Parser, RawDescription

EXIT_OK, EXIT_REFUSED, EXIT_DOWN, EXIT_DENIED = 0, 1, 2, 3
EXIT_CODES = f"""exit codes:
  {EXIT_OK}   the search ran (also when nothing matched)
  {EXIT_REFUSED}   nasclipd refused the request (bad query, unknown share, unreadable --like photo, busy)
  {EXIT_DOWN}   nasclipd is not running or does not answer
  {EXIT_DENIED}   the socket exists but this user may not use it (ask to be added to its group)
  {EXIT_USAGE}  wrong command-line usage, or a --config file that cannot be read"""

EXAMPLES = """examples:
  nasclip-query golden retriever on a beach
  nasclip-query beach Lisbon 2019                      (a capitalised place and a year become filters)
  nasclip-query "beach after:2019-06 before:2019-09 place:Lisbon camera:iphone"
  nasclip-query 2019年 里斯本 海滩
  nasclip-query --all --sort=-date my cat              (every match, newest first)
  nasclip-query dog + beach - people -k 30
  nasclip-query --like ~/holiday/IMG_0042.jpg --in /srv/photos/2023
  nasclip-query --like ~/videos/party.mp4@1:23       (like the moment 1 min 23 s into a video)
  nasclip-query --both red kayak                     (a RAW and its JPEG as two results)
  nasclip-query --text-in starbucks                 # photos showing the word (receipts, signs, screenshots)
  nasclip-query receipt --text-in 星巴克             # ranked by description among those showing the word
  nasclip-query sunset --paths -0 | xargs -0 cp -t ~/sunsets
  nasclip-query red car --html cars.html && xdg-open cars.html"""



def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nasclip-query",
        description="Search the photos and videos nasclipd has indexed by describing them.\n"
                    "A video is shown at the moment that matches (path @ mm:ss).\n"
                    "Only photos you may read yourself are shown. Combine terms with + and -.\n"
                    "The words may hold filters: after:DATE before:DATE taken:DATE place:NAME camera:TEXT\n"
                    "share:NAME in:FOLDER sort:ORDER text:WORD, a plain year or month (2019, 2019-06, 2019年6月),\n"
                    "and a place name (capitalised: Lisbon; or in Chinese: 里斯本). \"Quoted words\" are never\n"
                    "dates or places: they must appear in the text read in the photo, as text:WORD does.",
        epilog=EXAMPLES + "\n\n" + EXIT_CODES,
        formatter_class=RawDescription)
    parser.add_argument("text", nargs="*", help="what to look for, with any filters; '+' and '-' between words add "
                                               "or subtract descriptions")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", "-c", help="read the socket path from this nasclip config file")
    where.add_argument("--socket", "-s",
                       help="the daemon's socket (default: $NASCLIP_SOCKET, else the one in "
                            "/etc/nasclip/nasclip.yaml, else /run/nasclip/query.sock)")
    parser.add_argument("-k", type=int, metavar="N",
                        help="number of results (1-1000, default 10; with --all, at most N of the matches)")
    parser.add_argument("--all", action="store_true",
                        help="every photo that matches, however many, by a cut-off the daemon reads off this "
                             "query's own scores (the reply says which), instead of the N best")
    parser.add_argument("--like", metavar="IMAGE", action="append", default=[],
                        help="photos that look like this one (may be repeated; combines with text); a moment of a "
                             "video as PATH@SECONDS or PATH@MM:SS")
    parser.add_argument("--both", action="store_true",
                        help="show a RAW and the JPEG of the same shot (same folder and name) as two results; "
                             "without it they are one, the JPEG, naming the RAW as its original")
    parser.add_argument("--in", dest="path_prefix", metavar="FOLDER", help="only photos below this folder")
    parser.add_argument("--share", help="only photos of this share")
    parser.add_argument("--after", metavar="DATE",
                        help="only photos taken on or after DATE (YYYY-MM-DD; the file's time where a photo "
                             "does not say when it was taken)")
    parser.add_argument("--place", metavar="NAME",
                        help="only photos taken in or near this city, region or country (English or Chinese; "
                             "'Paris, Texas' for another Paris)")
    parser.add_argument("--camera", metavar="TEXT",
                        help="only photos whose camera make and model contain every word of TEXT (any case)")
    parser.add_argument("--sort", choices=("score", "date", "-date"), default="score",
                        help="order of the results: best first (score, the default), oldest taken first "
                             "(date) or newest first (--sort=-date)")
    parser.add_argument("--before", metavar="DATE", help="only photos taken before DATE (YYYY-MM-DD)")
    parser.add_argument("--text-in", metavar="WORDS", action="append", default=[],
                        help="only photos whose text (read in the photo) shows every word of WORDS, in any case, "
                             "also inside longer words; may be repeated. Alone, it ranks by how well they match")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object with a 'results' list")
    out.add_argument("--paths", action="store_true", help="print only paths, one per line")
    out.add_argument("--html", metavar="FILE", help="write a page of thumbnails linking to the photos")
    parser.add_argument("-0", "--null", action="store_true",
                        help="with --paths: end each path with NUL instead of a newline (for xargs -0)")
    parser.add_argument("--version", action="version", version=f"nasclip-query {__version__}")
    return parser


def image_terms(likes: list[str]) -> list[dict]:
    """--like photos as image terms, resolved here, as the asking user: the daemon follows no symbolic link.

    PATH@TIME names a moment of a video, unless PATH@TIME is itself a file (photo@2x.png).
    """
    terms = []
    for like in likes:
        path, seconds = split_moment(os.path.expanduser(like))
        term: dict = {"image": os.path.realpath(path), "weight": 1.0}
        if seconds is not None:
            term["time"] = seconds
        terms.append(term)
    return terms


def split_moment(like: str) -> tuple[str, float | None]:
    """(path, seconds) of a --like argument: 'clip.mp4@1:23' -> ('clip.mp4', 83.0); a plain path -> (path, None)."""
    path, at, moment = like.rpartition("@")
    if not at or not path or os.path.lexists(like):
        return like, None
    seconds = parse_clock(moment)
    return (path, seconds) if seconds is not None else (like, None)


def _adds_something(words: list[str]) -> bool:
    """Whether 'dog + beach - people' (as separate words) has a description that is not subtracted."""
    sign, adds = "+", False
    for word in words:
        if word in ("+", "-"):
            sign = word
        elif sign == "+":
            adds = True
    return adds


def build_request(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """The protocol request: the words go to the daemon as a query box (q), which it parses (querybox.py)."""
    query = " ".join(args.text).strip()
    filters = {key: getattr(args, key) for key in ("share", "after", "before", "camera", "place")
               if getattr(args, key)}
    words = [word for value in args.text_in for word in value.split()]
    if not query and not args.like and not filters and not args.path_prefix and not words:
        parser.error("give some text to search for, --like IMAGE, --text-in WORDS or a filter")
    if len(words) > 16:
        parser.error("--text-in takes at most 16 words")
    if query and not args.like and not _adds_something(args.text):
        parser.error("every term is subtracted; say what to look for first, e.g. 'beach - people'")
    if args.null and not args.paths:
        parser.error("-0 goes with --paths")
    request: dict = {"op": "search", **filters}
    if args.k is not None or not args.all:
        request["k"] = args.k or 10
    if query:
        request["q"] = query
    if words:
        request["text_in"] = words
    likes = image_terms(args.like)
    if len(likes) == 1 and "time" not in likes[0]:
        request["image"] = likes[0]["image"]
    elif likes:
        request["terms"] = likes
    if args.both:
        request["pairs"] = "both"
    if args.sort != "score":
        request["sort"] = args.sort
    if args.all:
        request["all"] = True
    if _chinese_locale():
        request["lang"] = "zh"  # place names in Chinese, where the gazetteer has them
    if args.path_prefix:
        request["path_prefix"] = os.path.abspath(os.path.expanduser(args.path_prefix))
    return request


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    request = build_request(args, parser)
    try:
        reply = call(resolve_socket(args.socket, args.config), **request)
    except SocketAccessDenied as exc:
        return _fail(exc, EXIT_DENIED)
    except DaemonUnavailable as exc:
        return _fail(exc, EXIT_DOWN)
    except RequestFailed as exc:
        return _fail(exc, EXIT_REFUSED)
    except NasclipError as exc:  # e.g. a broken --config file
        return _fail(exc, EXIT_USAGE if args.config else EXIT_REFUSED)
    try:
        _output(args, reply["results"], reply)
    except BrokenPipeError:  # `nasclip-query ... | head` closed the pipe: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _fail(exc: Exception, code: int) -> int:
    print(f"nasclip-query: {exc}", file=sys.stderr)
    return code


def _output(args: argparse.Namespace, results: list[dict], reply: dict) -> None:
    if args.json:
        shown = {"results": results, "understood": reply.get("understood"), "model": reply.get("model"),
                 "took_ms": reply.get("took_ms")}
        if "cutoff" in reply:
            shown["cutoff"] = reply["cutoff"]
        json.dump(shown, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif args.paths:
        end = b"\0" if args.null else b"\n"
        out = sys.stdout.buffer
        for r in results:
            out.write(os.fsencode(r["path"]) + end)  # the exact bytes, also for non-UTF-8 names
        out.flush()
    elif args.html:
        title = (reply.get("understood") or " ".join(args.text)
                 or ("photos showing " + " ".join(args.text_in) if args.text_in else "")
                 or "photos like " + ", ".join(Path(p).name for p in args.like))
        Path(args.html).write_text(html_page(title, results), encoding="utf-8")
        print(f"wrote {len(results)} results to {args.html}", file=sys.stderr)
    else:
        _human(results, reply)
    sys.stdout.flush()


def _chinese_locale() -> bool:
    """Whether the user reads Chinese, by the locale variables in gettext's order."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return value.startswith("zh")
    return False


def _human(results: list[dict], reply: dict) -> None:
    """rank, score, path a line (a video's with its moment: 'path @ 01:23'). A search with filters, an order
    or --all first says how it was understood;
    it, and any search finding photos that say when or where they were taken, also shows each photo's day
    taken and its place and camera. Photos that say nothing keep the three columns scripts may read."""
    interpreted = bool(reply.get("interpreted"))
    detailed = interpreted or any(r.get("taken_from") == "exif" or r.get("place") for r in results)
    if interpreted:
        cutoff = reply.get("cutoff")
        count = f"{len(results)} photo{'s' if len(results) != 1 else ''}"
        if cutoff:
            count += f" above score {cutoff['score']:.3f}" + (", cut at the limit" if cutoff.get("truncated") else "")
        # On stdout above the photos it describes; with none, beside the message saying so.
        print(f"{printable(reply.get('understood') or '')} ({count})", file=sys.stdout if results else sys.stderr)
    if not results:
        print("no matching photos (or none you may read)", file=sys.stderr)
    for rank, r in enumerate(results, 1):
        score = f"{r['score']:.3f}" if r.get("score") is not None else "    -"
        # A video is shown at the moment that matched, as a player would seek to it.
        path = printable(r["path"]) + (f" @ {clock(r['time'])}" if r.get("time") is not None else "")
        if not detailed:
            print(f"{rank:3d}  {score}  {path}")
        else:
            day = (r.get("taken") or "")[:10] or "          "
            extra = " · ".join(printable(part) for part in (r.get("place"), r.get("camera")) if part)
            print(f"{rank:3d}  {score}  {day}  {path}" + (f"  ({extra})" if extra else ""))
        if r.get("text"):  # the text read in the photo around the words asked for
            print(f"           \u201c{printable(r['text'])}\u201d")


def _thumbnail(result: dict, size: int = 320) -> str | None:
    """A data: URL of a small JPEG of the photo (a video's frame at its moment, a RAW's preview), or None."""
    import base64
    import io

    from PIL import Image, ImageOps

    from ..media.formats import kind_of

    path = result["path"]
    try:
        kind = kind_of(path)
        if kind == "video":
            from ..media.video import VideoLimits, frame_at
            image = frame_at(Path(path), VideoLimits(), size // 2, result.get("time") or 0.0)
        elif kind == "raw":
            from ..indexing.bounded import DecodeLimits
            from ..media.raw import open_raw
            image = open_raw(Path(path), size // 2, DecodeLimits(120_000_000)).image
        else:
            with Image.open(path) as opened:
                opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
                image = ImageOps.exif_transpose(opened).convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
    except Exception:  # a photo that cannot be shown still gets its link
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def html_page(title: str, results: list[dict]) -> str:
    """A self-contained page: thumbnails embedded as data: URLs, each linking to its file."""
    # Imported here: the plain search path does without them (and without Pillow).
    import html
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime

    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:  # Pillow and FFmpeg decode without the GIL
        thumbs = list(pool.map(_thumbnail, results))
    cards = []
    for rank, (r, thumb) in enumerate(zip(results, thumbs), 1):
        shown = Path(printable(r["path"]))
        picture = (f'<img src="{thumb}" alt="{html.escape(shown.name)}">' if thumb
                   else '<div class="missing">no preview</div>')
        # The day it was taken where the photo says (its own clock), else the file's day.
        when = (r.get("taken") or "")[:10] or datetime.fromtimestamp(r.get("mtime", 0)).strftime("%Y-%m-%d")
        for part in (r.get("place"), r.get("camera")):
            if part:
                when += f" · {part}"
        score = f"{r['score']:.3f}" if r.get("score") is not None else "—"
        # Recognised text is whatever the photo shows: escaped like every other part of the page.
        said = f'<br><q class="text">{html.escape(printable(r["text"]))}</q>' if r.get("text") else ""
        link, name = Path(r["path"]).as_uri(), shown.name
        if r.get("time") is not None:  # a video: opened at the moment that matched (a media fragment)
            link += f"#t={r['time']:.1f}"
            name += f" @ {clock(r['time'])}"
        if r.get("original"):
            said += f'<br><small>RAW: <a href="{html.escape(Path(r["original"]).as_uri())}">' \
                    f'{html.escape(Path(printable(r["original"])).name)}</a></small>'
        cards.append(
            f'<figure><a href="{html.escape(link)}">{picture}</a>'
            f'<figcaption>{rank}. {html.escape(name)}<br><small>{score} · {html.escape(when)} · '
            f'{html.escape(str(shown.parent))}</small>{said}</figcaption></figure>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nasclip: {html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; background: #fff; border-radius: 6px; padding: .5rem; box-shadow: 0 1px 3px #0002; }}
img {{ width: 100%; height: 200px; object-fit: contain; background: #eee; display: block; }}
.missing {{ height: 200px; display: grid; place-items: center; color: #888; background: #eee; }}
figcaption {{ font-size: .85rem; overflow-wrap: anywhere; margin-top: .3rem; }}
q.text {{ display: block; margin-top: .2rem; color: #444; font-style: italic; }}
</style></head>
<body><h1>{html.escape(title)}</h1><p>{len(results)} photos, best first. Click a picture to open the file.</p>
<main>
{chr(10).join(cards)}
</main></body></html>
"""


if __name__ == "__main__":
    sys.exit(main())
