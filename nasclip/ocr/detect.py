"""Text detection: PP-OCRv4's DB detector, from a photo to the quadrilaterals of its text lines.

The network gives, per pixel, the probability that it lies inside a line of
text (shrunk a little, so that neighbouring lines stay apart). Lines are the
connected regions of that map above ``THRESHOLD``; each becomes its minimum
area rectangle, kept if the map's mean over it reaches ``BOX_THRESHOLD``,
then grown back by the amount the training shrank it (DB's "unclip":
area × ratio / perimeter on every side). The constants are PaddleOCR's
defaults for this model, as RapidOCR uses them.

A large photo is seen in overlapping tiles of at most ``TILE`` pixels a
side, whose probability maps are stitched (each pixel from the tile where it
lies farthest from an edge) before the lines are found once on the whole
map: the network's memory grows with the pixels it sees at once, and a
2000 × 1500 photo in one piece took 570 MB; in six tiles of 768 × 832, 26%
more time and a quarter of the memory.

The unclip of a rectangle is computed exactly (a rectangle offset by d with
round joins has, as its minimum-area rectangle, the rectangle d larger on
every side), so no polygon-clipping library is needed. OpenCV (headless)
finds the regions and their rectangles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..indexing.backends import Session

THRESHOLD = 0.3  # a pixel is text above this probability
BOX_THRESHOLD = 0.5  # a region is a text line when its mean probability reaches this
UNCLIP_RATIO = 1.6
MAX_CANDIDATES = 1000
MIN_SIDE = 3  # regions thinner than this (in the map's pixels) are noise
STRIDE = 32  # the network's input sides are multiples of this
ROW_TOLERANCE = 10  # boxes whose tops differ by less than this (photo pixels) are read as one row
TILE = 1024  # the largest side the network sees at once (a multiple of STRIDE)
OVERLAP = 128  # at least this many pixels shared by neighbouring tiles: context for what lies near an edge


def spans(length: int) -> list[tuple[int, int, int, int]]:
    """(start, end, keep from, keep to) of the tiles along one side of length pixels (a multiple of STRIDE).

    As few tiles as fit in TILE with OVERLAP between neighbours, all of one
    length (a multiple of STRIDE), evenly spread; each keeps the part up to the
    middle of its overlaps, so that the kept parts cover the side once.
    """
    if length <= TILE:
        return [(0, length, 0, length)]
    count = -(-(length - OVERLAP) // (TILE - OVERLAP))
    size = min(length, -(-((length - OVERLAP) // count + OVERLAP) // STRIDE) * STRIDE)
    starts = [int(round(i * (length - size) / (count - 1) / STRIDE)) * STRIDE for i in range(count)]
    edges = [0] + [(starts[i + 1] + starts[i] + size) // 2 for i in range(count - 1)] + [length]
    return [(start, start + size, edges[i], edges[i + 1]) for i, start in enumerate(starts)]


def _cv2() -> Any:
    import cv2  # headless OpenCV: imported when the first photo is read, not by every command

    return cv2


def network_input(bgr: np.ndarray) -> np.ndarray:
    """[1, 3, H, W] float32 for the detector: sides rounded to multiples of STRIDE, pixels to [-1, 1]."""
    cv2 = _cv2()
    height, width = bgr.shape[:2]
    new_h = max(STRIDE, int(round(height / STRIDE)) * STRIDE)
    new_w = max(STRIDE, int(round(width / STRIDE)) * STRIDE)
    resized = bgr if (new_h, new_w) == (height, width) else cv2.resize(bgr, (new_w, new_h))
    data = resized.astype(np.float32) * (2.0 / 255.0) - 1.0
    return np.ascontiguousarray(data.transpose(2, 0, 1)[None])


def order_corners(points: np.ndarray) -> np.ndarray:
    """The four corners as top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _mean_inside(probability: np.ndarray, corners: np.ndarray) -> float:
    """The map's mean over a quadrilateral (over the pixels its filled polygon covers)."""
    cv2 = _cv2()
    h, w = probability.shape
    x0 = int(np.clip(np.floor(corners[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = (corners - np.array([x0, y0], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2), 1)
    return float(cv2.mean(probability[y0:y1 + 1, x0:x1 + 1], mask)[0])


def boxes_from_map(probability: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Quadrilaterals [4, 2] (in an image of width × height) of the text lines a probability map shows."""
    cv2 = _cv2()
    map_h, map_w = probability.shape
    # A 2×2 dilation joins characters the shrunk map shows a pixel apart (PaddleOCR's use_dilation).
    bitmap = cv2.dilate((probability > THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours[:MAX_CANDIDATES]:
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < MIN_SIDE:
            continue
        corners = order_corners(cv2.boxPoints(((cx, cy), (rw, rh), angle)))
        if _mean_inside(probability, corners) < BOX_THRESHOLD:
            continue
        grow = rw * rh * UNCLIP_RATIO / (2 * (rw + rh))
        rw, rh = rw + 2 * grow, rh + 2 * grow
        if min(rw, rh) < MIN_SIDE + 2:
            continue
        corners = order_corners(cv2.boxPoints(((cx, cy), (rw, rh), angle)))
        corners[:, 0] = np.clip(np.round(corners[:, 0] * width / map_w), 0, width - 1)
        corners[:, 1] = np.clip(np.round(corners[:, 1] * height / map_h), 0, height - 1)
        if np.linalg.norm(corners[0] - corners[1]) <= 3 or np.linalg.norm(corners[0] - corners[3]) <= 3:
            continue
        boxes.append(corners)
    return boxes


def reading_order(boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Top to bottom, and left to right within a row."""
    ordered = sorted(boxes, key=lambda b: (float(b[0][1]), float(b[0][0])))
    for i in range(len(ordered) - 1):  # one bubble pass per box, as PaddleOCR orders rows
        for j in range(i, -1, -1):
            if abs(ordered[j + 1][0][1] - ordered[j][0][1]) < ROW_TOLERANCE \
                    and ordered[j + 1][0][0] < ordered[j][0][0]:
                ordered[j], ordered[j + 1] = ordered[j + 1], ordered[j]
            else:
                break
    return ordered


class Detector:
    """Text lines of a BGR image, as quadrilaterals in its own pixels."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self._input = session.input_names()[0]

    def __call__(self, bgr: np.ndarray) -> list[np.ndarray]:
        height, width = bgr.shape[:2]
        return reading_order(boxes_from_map(self.probability(network_input(bgr)), width, height))

    def probability(self, data: np.ndarray) -> np.ndarray:
        """The text probability map [H, W] of a network input [1, 3, H, W], tile by tile where it is large."""
        _, _, height, width = data.shape
        out = np.empty((height, width), dtype=np.float32)
        for y0, y1, top, bottom in spans(height):
            for x0, x1, left, right in spans(width):
                tile = self.session.run({self._input: np.ascontiguousarray(data[:, :, y0:y1, x0:x1])})
                part = next(iter(tile.values()))[0, 0]
                out[top:bottom, left:right] = part[top - y0:bottom - y0, left - x0:right - x0]
        return out
