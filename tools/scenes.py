"""Scenes the demo model understands: one filled shape on a plain background.

This generator is deliberately separate from the one in train_demo_model.py
(its own code, seed, sizes, aspect ratios and JPEG qualities), so tests and
the demo measure the shipped model on scenes it never saw. Standard library
plus Pillow only.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

PALETTE = {
    "red": (215, 30, 30), "green": (40, 170, 50), "blue": (30, 60, 210), "yellow": (240, 220, 40),
    "orange": (245, 140, 20), "purple": (130, 40, 170), "white": (245, 245, 245), "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star")
CHINESE_COLOURS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "orange": "橙色",
                   "purple": "紫色", "white": "白色", "black": "黑色"}
CHINESE_SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形"}


@dataclass(frozen=True)
class Scene:
    """What a generated photo shows."""

    colour: str
    shape: str
    background: str

    @property
    def english(self) -> str:
        return f"a {self.colour} {self.shape}"

    @property
    def chinese(self) -> str:
        return f"{CHINESE_COLOURS[self.colour]}的{CHINESE_SHAPES[self.shape]}"


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 20) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [(angle + math.pi / 4 + k * math.pi / 2) for k in range(4)]
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in corners]
    if shape == "triangle":
        return [(cx + r * math.cos(angle + k * 2 * math.pi / 3), cy + r * math.sin(angle + k * 2 * math.pi / 3))
                for k in range(3)]
    points = []  # five-pointed star
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.42
        a = angle + k * math.pi / 5
        points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return points


def render(scene: Scene, rng: random.Random, width: int | None = None, height: int | None = None) -> Image.Image:
    """One photo of scene: random size, aspect, position, shape size (10-60 % of the shorter side)."""
    if width is None or height is None:
        short = rng.randint(200, 900)
        aspect = math.exp(rng.uniform(math.log(1 / 2.2), math.log(2.2)))
        width, height = (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))
    image = Image.new("RGB", (width, height), _jitter(PALETTE[scene.background], rng))
    draw = ImageDraw.Draw(image)
    side = min(width, height) * rng.uniform(0.15, 0.6)
    r = side / 2
    cx = rng.uniform(r, width - r)
    cy = rng.uniform(r, height - r)
    fill = _jitter(PALETTE[scene.colour], rng)
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(scene.shape, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=fill)
    return image


def jpeg_bytes(image: Image.Image, rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(45, 95))
    return buffer.getvalue()


def balanced_scenes(count: int, rng: random.Random) -> list[Scene]:
    """count scenes covering every colour x shape as evenly as possible, in random order."""
    combos = [(c, s) for c in PALETTE for s in SHAPES]
    names = list(PALETTE)
    scenes = []
    for i in range(count):
        colour, shape = combos[i % len(combos)]
        # Each repeat of a combo gets another background, so every colour pair shows up.
        others = [c for c in PALETTE if c != colour]
        background = others[(i // len(combos) + names.index(colour)) % len(others)]
        scenes.append(Scene(colour, shape, background))
    rng.shuffle(scenes)
    return scenes
