"""``nasclip models tokenize`` and ``nasclip models embed``: what a model makes of texts and photos.

For a user debugging a query ("why does this not find my cat?") and for
the parity tests: the token ids and the unit vectors nasclip computes,
through the code the daemon uses (its tokenizer, its decode and
preprocessing, its encoder).
"""

from __future__ import annotations

import argparse
import json
import os

from ..config import IndexerConfig
from ..errors import DecodeError, ModelError
from ..model.spec import load_model_spec
from .models import model_folder


def cmd_tokenize(args: argparse.Namespace) -> int:
    from ..indexing.tokenizer import TextTokenizer

    spec = load_model_spec(model_folder(args))
    ids, mask = TextTokenizer(spec).encode(list(args.texts))
    # Padding is not part of what the model reads; the mask says where it starts.
    rows = [[int(i) for i, m in zip(row, keep) if m] for row, keep in zip(ids, mask)]
    if args.json:
        print(json.dumps({"model": spec.id, "context_length": spec.text.context_length,
                          "texts": [{"text": t, "ids": r} for t, r in zip(args.texts, rows)]}, ensure_ascii=False))
    else:
        for text, row in zip(args.texts, rows):
            print(f"{text!r}: {len(row)} tokens")
            print("  " + " ".join(str(i) for i in row))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from ..indexing.bounded import decode_limits, open_bounded
    from ..indexing.encoder import Encoder
    from ..indexing.imaging import load_tensor

    if not args.text and not args.image:
        raise ModelError("give at least one --text T or --image FILE")
    spec = load_model_spec(model_folder(args))
    limits = decode_limits(IndexerConfig())  # the defaults a config without an indexer section gets
    encoder = Encoder.open(spec, backend=args.backend)
    try:
        texts = encoder.encode_texts(list(args.text)) if args.text else np.zeros((0, spec.embedding_dim))
        images: list[np.ndarray] = []
        for name in args.image:
            # The daemon's decode: one descriptor, bounded reads, reduced-scale JPEG decoding.
            try:
                fd = os.open(name, os.O_RDONLY)
            except OSError as exc:
                raise ModelError(f"{name}: cannot open it: {exc.strerror or exc}") from None
            try:
                handle = open_bounded(fd, os.fstat(fd).st_size, limits)
                tensor = load_tensor(handle, spec.image, limits.max_pixels)
            except DecodeError as exc:
                raise DecodeError(f"{name}: {exc}") from None
            finally:
                os.close(fd)
            images.append(encoder.encode_images(tensor[None])[0])
    finally:
        encoder.close()
    if args.json:
        print(json.dumps({"model": spec.id, "dim": spec.embedding_dim,
                          "texts": [{"text": t, "vector": [float(v) for v in vec]} for t, vec in zip(args.text, texts)],
                          "images": [{"path": p, "vector": [float(v) for v in vec]}
                                     for p, vec in zip(args.image, images)]}, ensure_ascii=False))
    else:
        for label, vector in [*((repr(t), v) for t, v in zip(args.text, texts)),
                              *((p, v) for p, v in zip(args.image, images))]:
            head = " ".join(f"{v:+.4f}" for v in vector[:8])
            print(f"{label}: [{head} ...] ({len(vector)} values, unit length)")
    return 0


def add_inspect_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `nasclip models tokenize` and `nasclip models embed`."""
    tokenize = commands.add_parser("tokenize", parents=[common],
                                   help="print the token ids a model's text encoder gets for each text")
    tokenize.add_argument("model_dir", help="model folder holding model.yaml, or an installed model's name")
    tokenize.add_argument("texts", nargs="+", metavar="TEXT")
    tokenize.add_argument("--json", action="store_true", help='{"texts": [{"text", "ids"}]} (ids without padding)')
    tokenize.set_defaults(func=cmd_tokenize)
    embed = commands.add_parser("embed", parents=[common],
                                help="print the unit vectors nasclip computes for texts and photos "
                                     "(the daemon's decode, preprocessing and tokenizer)")
    embed.add_argument("model_dir", help="model folder holding model.yaml, or an installed model's name")
    embed.add_argument("--text", action="append", default=[], metavar="T", help="a text (repeatable)")
    embed.add_argument("--image", action="append", default=[], metavar="FILE", help="a photo (repeatable)")
    embed.add_argument("--backend", choices=("auto", "onnx", "axengine"), default="auto",
                       help="which runtime encodes (default: as the daemon picks)")
    embed.add_argument("--json", action="store_true",
                       help='{"texts": [{"text", "vector"}], "images": [{"path", "vector"}]}')
    embed.set_defaults(func=cmd_embed)
