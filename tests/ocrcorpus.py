"""A text-in-photos corpus with its ground truth, built by the tests (and bench/bench_ocr.py).

Words and sentences, English and Chinese, are rendered with several real
fonts (Debian's fonts-dejavu-core, fonts-wqy-zenhei, fonts-noto-cjk; `make
test` installs them through tools/system_packages.py) onto crops of real
photographs (tests/photos.py), as the things people photograph: signs
(a coloured panel), receipts (paper, item lines and prices), captions
straight on the photo (outlined), and screenshots (flat colours, PNG). Each
image holds text of one size (the font's em height in pixels, ``SIZES``),
turned slightly (up to ±6°) and put in perspective (corners moved up to 4%),
with sensor-like noise and JPEG compression (quality 60-95) for the photos.
The same seed gives the same corpus on every run.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from photos import real_photos
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEJAVU = "/usr/share/fonts/truetype/dejavu/"
NOTO = "/usr/share/fonts/opentype/noto/"
WQY = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
# (path, face index in a collection); Noto CJK's face 2 is Simplified Chinese.
LATIN_FONTS = ((DEJAVU + "DejaVuSans.ttf", 0), (DEJAVU + "DejaVuSerif.ttf", 0), (DEJAVU + "DejaVuSans-Bold.ttf", 0),
               (DEJAVU + "DejaVuSansMono.ttf", 0), (NOTO + "NotoSansCJK-Regular.ttc", 2), (WQY, 0))
CHINESE_FONTS = ((WQY, 0), (NOTO + "NotoSansCJK-Regular.ttc", 2), (NOTO + "NotoSerifCJK-Regular.ttc", 2),
                 (NOTO + "NotoSansCJK-Bold.ttc", 2))
FONTS = tuple(sorted({path for path, _ in LATIN_FONTS + CHINESE_FONTS}))

SIZES = (10, 12, 16, 20, 24, 32, 48)
MARGIN = 60  # pixels between a text block and the image's edges
LARGE = (4000, 3000)
LARGE_SIZES = (24, 32, 48)  # text height: the font's em in pixels
KINDS = ("sign", "receipt", "caption", "screenshot")

ENGLISH = ("coffee", "receipt", "total", "parking", "exit", "station", "market", "bakery", "pharmacy", "hotel",
           "open", "closed", "welcome", "street", "museum", "garden", "library", "airport", "platform", "ticket",
           "invoice", "espresso", "latte", "sandwich", "salad", "water", "bread", "cheese", "orange", "chicken",
           "starbucks", "lumiere", "harbor", "village", "north", "south", "entrance", "toilets", "office",
           "meeting", "monday", "friday", "delivery", "discount", "member", "thanks", "visit", "again", "cash",
           "card", "change", "battery", "settings", "download", "message", "calendar", "photos", "network")
PRICES = ("3.50", "12.80", "7.25", "19.99", "42.00", "5.10", "8.40", "126.30")
SENTENCES = ("thank you for your visit", "please keep your receipt", "no parking on weekdays",
             "open daily until midnight", "mind the gap between the train and the platform",
             "your order will be ready soon", "battery low connect charger", "free wifi for members")
CHINESE = ("星巴克", "咖啡", "收据", "合计", "停车场", "出口", "入口", "车站", "超市", "面包", "药店", "酒店",
           "营业中", "欢迎光临", "博物馆", "花园", "图书馆", "机场", "站台", "车票", "发票", "拿铁", "三明治",
           "沙拉", "矿泉水", "牛奶", "橙汁", "鸡肉", "北京", "上海", "广州", "深圳", "杭州", "南京", "成都",
           "会员", "折扣", "谢谢", "现金", "找零", "电池", "设置", "下载", "消息", "日历", "相册", "网络",
           "地铁", "医院", "银行", "学校", "餐厅", "早餐", "午餐", "晚餐", "开门", "关门", "周一", "周五")


@dataclass
class Sample:
    """One corpus image and what it shows."""

    path: Path
    language: str  # "en" or "zh"
    size: int  # text height in pixels (font em)
    kind: str
    words: list[str] = field(default_factory=list)  # ground truth, as rendered
    text: str = ""  # every rendered line, joined with newlines


def _font(choice: tuple[str, int], size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(choice[0], size, index=choice[1])


def _lines(rng: random.Random, language: str, kind: str, count: int) -> list[list[str]]:
    """Lines of words: receipts hold an item and a price, the rest short phrases."""
    lines = []
    for _ in range(count):
        if language == "en" and kind != "receipt" and rng.random() < 0.25:
            words = rng.choice(SENTENCES).split()
        elif language == "en":
            words = rng.sample(ENGLISH, rng.randint(1, 3))
            if kind == "receipt":
                words.append(rng.choice(PRICES))
            elif rng.random() < 0.3:
                words[0] = words[0].capitalize() if rng.random() < 0.5 else words[0].upper()
        else:
            words = rng.sample(CHINESE, rng.randint(1, 3))
        lines.append(words)
    return lines


def _perspective(size: tuple[int, int], rng: random.Random, amount: float) -> list[float]:
    """PIL PERSPECTIVE coefficients that move each corner by up to amount of the image's size."""
    w, h = size
    out = [(0, 0), (w, 0), (w, h), (0, h)]
    src = [(x + rng.uniform(-amount, amount) * w, y + rng.uniform(-amount, amount) * h) for x, y in out]
    rows, rhs = [], []
    for (x, y), (u, v) in zip(out, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


BACKGROUNDS = 10  # real photos the backgrounds are cut from, each loaded once


def _load_photos(rng: random.Random, side: int) -> list[Image.Image]:
    chosen = rng.sample(real_photos(), BACKGROUNDS)
    loaded = []
    for path in chosen:
        with Image.open(path) as photo:
            photo.draft("RGB", (side, side))
            photo = photo.convert("RGB")
            photo.thumbnail((side * 2, side * 2))
            loaded.append(photo)
    return loaded


def _background(rng: random.Random, photos: list[Image.Image], size: tuple[int, int], kind: str) -> Image.Image:
    if kind == "screenshot":
        dark = rng.random() < 0.4
        return Image.new("RGB", size, (32, 34, 40) if dark else (246, 246, 248))
    photo = rng.choice(photos)
    # A crop of 1/zoom of the photo's largest region of the canvas's shape, scaled to the canvas.
    zoom = rng.uniform(1.0, 1.6)
    fit = min(photo.width / size[0], photo.height / size[1]) / zoom
    w, h = round(size[0] * fit), round(size[1] * fit)
    left, top = rng.randint(0, photo.width - w), rng.randint(0, photo.height - h)
    return photo.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))


def _render_block(rng: random.Random, lines: list[list[str]], language: str, kind: str, size: int,
                  canvas: tuple[int, int], dark: bool) -> tuple[Image.Image, list[str], tuple[float, float]]:
    """The text block on a transparent layer of the canvas size, the lines as drawn, and the block's centre.

    The block keeps MARGIN from the edges, so that turning it and moving its corners keeps it whole.
    """
    font = _font(rng.choice(LATIN_FONTS if language == "en" else CHINESE_FONTS), size)
    joiner = " " if language == "en" else rng.choice(("", " "))
    # A line wider than the canvas allows is broken at a word, as a sign or a receipt would be.
    room = canvas[0] - 2 * MARGIN
    fitted: list[list[str]] = []
    for words in lines:
        current: list[str] = []
        for word in words:
            if current and font.getbbox(joiner.join(current + [word]))[2] > room:
                fitted.append(current)
                current = []
            current.append(word)
        fitted.append(current)
    lines[:] = fitted
    texts = [joiner.join(words) for words in lines]
    gap = int(size * 0.6)
    widths = [font.getbbox(t)[2] for t in texts]
    block_w, block_h = max(widths), len(texts) * (size + gap)
    pad = max(8, size // 2)
    layer = Image.new("RGBA", canvas, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    left = rng.randint(MARGIN, max(MARGIN, canvas[0] - block_w - MARGIN))
    top = rng.randint(MARGIN, max(MARGIN, canvas[1] - block_h - MARGIN))
    box = (left - pad, top - pad, left + block_w + pad, top + block_h + pad)
    stroke = 0
    if kind == "sign":
        panel = tuple(rng.randint(0, 255) for _ in range(3))
        ink = (255, 255, 255) if sum(panel) < 380 else (20, 20, 20)
        draw.rounded_rectangle(box, radius=pad, fill=panel + (255,))
    elif kind == "receipt":
        draw.rectangle(box, fill=(250, 248, 240, 255))
        ink = (40, 40, 45)
    elif kind == "caption":
        ink = rng.choice(((255, 255, 255), (255, 230, 40), (20, 20, 20)))
        stroke = max(1, size // 12)
    else:  # a screenshot: the theme's text colour
        ink = (230, 230, 235) if dark else (30, 30, 35)
    for i, text in enumerate(texts):
        y = top + i * (size + gap)
        draw.text((left, y), text, font=font, fill=ink + (255,), stroke_width=stroke,
                  stroke_fill=(0, 0, 0, 255) if sum(ink) > 380 else (255, 255, 255, 255))
    return layer, texts, (left + block_w / 2, top + block_h / 2)


def build(folder: Path, per_cell: int = 5, seed: int = 17, width: int = 1024, height: int = 768,
          large: int = 0) -> list[Sample]:
    """Write the corpus into folder: per_cell images for each language and size; returns their truth.

    With ``large``, as many 12-megapixel (4000 × 3000) photos per language follow, with text of
    LARGE_SIZES: what text recognition sees scaled down to ocr.max_side.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    grain = np.random.default_rng(seed)
    photos = _load_photos(rng, max(width, height))
    samples = []
    cells = [(language, size, n, (width, height)) for language in ("en", "zh") for size in SIZES
             for n in range(per_cell)]
    cells += [(language, LARGE_SIZES[n % len(LARGE_SIZES)], n, LARGE) for language in ("en", "zh")
              for n in range(large)]
    big = _load_photos(rng, max(LARGE)) if large else photos
    for language, size, n, canvas in cells:
        kind = KINDS[(n + SIZES.index(size)) % len(KINDS)]
        lines = _lines(rng, language, kind, rng.randint(2, 4) if size < 40 else rng.randint(1, 3))
        image = _background(rng, big if canvas == LARGE else photos, canvas, kind)
        dark = sum(image.getpixel((0, 0))) < 384  # type: ignore[arg-type]
        layer, texts, centre = _render_block(rng, lines, language, kind, size, canvas, dark)
        if kind != "screenshot":
            layer = layer.rotate(rng.uniform(-6, 6), Image.Resampling.BICUBIC, center=centre)
            layer = layer.transform(canvas, Image.Transform.PERSPECTIVE, _perspective(canvas, rng, 0.04),
                                    Image.Resampling.BICUBIC)
        image.paste(layer, (0, 0), layer)
        name = f"{language}-{size:02d}-{n}-{kind}" + ("-12mp" if canvas == LARGE else "")
        if kind == "screenshot":
            path = folder / f"{name}.png"
            image.save(path)
        else:
            path = folder / f"{name}.jpg"
            path.write_bytes(_photographed(image, rng, grain))
        words = [w for line in lines for w in line]
        samples.append(Sample(path, language, size, kind, words, "\n".join(texts)))
    return samples


def _photographed(image: Image.Image, rng: random.Random, grain: np.random.Generator) -> bytes:
    """What a camera makes of it: sometimes a little blur, always sensor noise and JPEG compression."""
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    pixels = np.asarray(image, dtype=np.int16)
    pixels = pixels + grain.normal(0, rng.uniform(2, 8), pixels.shape[:2] + (1,)).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=rng.randint(60, 95))
    return buffer.getvalue()
