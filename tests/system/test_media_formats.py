"""Issue 18: JPEG XL as a photo format, and motion photos whose clip must not confuse the JPEG decoder.

JPEG XL goes through imaging.py like any photo (pillow-jxl-plugin decodes it):
its tensor is the one Pillow's full decode of the same file gives, lossless
files give exactly the original's, EXIF orientation and capture time are read,
a truncated file may be retried, and the real daemon indexes and finds one.

Motion photos are made here as phones write them (a JPEG, then an MP4 made with
PyAV, located by XMP, by the old MicroVideo offset, by Samsung's marker, or by
nothing): the still decodes exactly as the plain JPEG does, through the same
bounded reader the indexer uses, and find_motion_clip gives the clip's exact
bytes, which PyAV opens and samples.
"""

from __future__ import annotations

import io
import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import DaemonProcess, write_scene
from photos import real_pictures
from PIL import Image
from test_decoding import picture
from videos import CODECS, write_video

from nasclip.errors import DecodeError
from nasclip.indexing.bounded import DecodeLimits, open_bounded
from nasclip.indexing.imaging import load_image, load_tensor, resize, to_rgb, to_tensor
from nasclip.media.motion import MotionClip, find_motion_clip, jpeg_end
from nasclip.media.video import VideoLimits, sample_video
from nasclip.meta.exif import PhotoMeta
from nasclip.model.spec import ImageSpec
from tools.scenes import Scene, jpeg_bytes, render

SPEC = ImageSpec(onnx="image.onnx", size=224, resize="crop")
LIMIT = 100_000_000


def through_bounded_reader(path: Path, meta: list[PhotoMeta] | None = None) -> np.ndarray:
    """The tensor as the indexer makes it: one descriptor, the bounded reader, load_tensor."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return load_tensor(open_bounded(fd, os.fstat(fd).st_size, DecodeLimits(LIMIT)), SPEC, LIMIT, meta)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- JPEG XL


@pytest.fixture(scope="module")
def real() -> list[Image.Image]:
    return real_pictures(5, 7, 1400)


def test_lossless_jpeg_xl_gives_the_original_pixels_tensor(tmp_path: Path, real: list[Image.Image]) -> None:
    for i, image in enumerate(real):
        jxl, png = tmp_path / f"{i}.jxl", tmp_path / f"{i}.png"
        image.save(jxl, "JXL", lossless=True)
        image.save(png)
        assert np.array_equal(through_bounded_reader(jxl), through_bounded_reader(png)), i


def test_lossy_jpeg_xl_gives_the_tensor_of_pillow_s_full_decode(tmp_path: Path, real: list[Image.Image]) -> None:
    for i, image in enumerate(real):
        jxl = tmp_path / f"{i}.jxl"
        image.save(jxl, "JXL", quality=85)
        with Image.open(jxl) as decoded:
            reference = to_tensor(resize(to_rgb(decoded.convert("RGB")), SPEC), SPEC)
        assert np.array_equal(through_bounded_reader(jxl), reference), i


def test_jpeg_xl_exif_turns_it_upright_and_gives_its_capture_time(tmp_path: Path) -> None:
    upright = picture(640, 480)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8769)[0x9003] = "2024:03:02 10:11:12"
    path = tmp_path / "turned.jxl"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, "JXL", lossless=True, exif=exif.tobytes())
    found: list[PhotoMeta] = []
    image = load_image(path, SPEC, LIMIT, found)
    assert image.size == (224, 224)
    expected = resize(upright, SPEC)
    assert np.abs(np.asarray(image, dtype=np.float32) - np.asarray(expected, dtype=np.float32)).mean() < 2
    assert found[0].make == "Canon" and found[0].taken is not None
    assert found[0].taken.as_datetime().isoformat() == "2024-03-02T10:11:12"


def test_a_truncated_jpeg_xl_fails_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.jxl"
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # with metadata the plugin writes the ISO box container
    picture(800, 600).save(path, "JXL", quality=90, exif=exif.tobytes())
    data = path.read_bytes()
    assert data[4:8] == b"JXL "
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DecodeError, match="truncated") as caught:
        through_bounded_reader(path)
    assert caught.value.retry


def test_the_daemon_indexes_a_jpeg_xl_photo_and_finds_it(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    rng = random.Random(18)
    red = Scene("red", "circle", "white")
    share.mkdir()
    render(red, rng, 800, 600).save(share / "circle.jxl", "JXL", quality=90)
    for i, other in enumerate([Scene("blue", "square", "yellow"), Scene("green", "triangle", "black"),
                               Scene("yellow", "star", "purple")]):
        write_scene(share / f"other{i}.jpg", other, seed=i)
    daemon: DaemonProcess = daemon_factory({"photos": share})
    assert daemon.wait_idle()["photos"]["indexed"] == 4
    assert daemon.search("a red circle", k=1)[0]["path"].endswith("circle.jxl")


# --------------------------------------------------------------------------- motion photos


def clip(tmp_path: Path) -> bytes:
    rng = random.Random(7)
    frames = [(render(Scene("red", "circle", "white"), rng, 320, 240), 1.0),
              (render(Scene("blue", "square", "yellow"), rng, 320, 240), 1.5)]
    return write_video(tmp_path / "clip.mp4", frames, CODECS["h264-mp4"]).read_bytes()


def still(seed: int = 3) -> bytes:
    rng = random.Random(seed)
    return jpeg_bytes(render(Scene("green", "star", "orange"), rng, 1600, 1200), rng)


def with_xmp(jpeg: bytes, xmp: str) -> bytes:
    """The JPEG with an XMP APP1 segment right after SOI."""
    body = b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode()
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def google_xmp(length: int, padding: int = 0) -> str:
    return f"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description xmlns:GCamera="http://ns.google.com/photos/1.0/camera/"
   xmlns:Container="http://ns.google.com/photos/1.0/container/"
   xmlns:Item="http://ns.google.com/photos/1.0/container/item/"
   GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1" GCamera:MotionPhotoPresentationTimestampUs="1250000">
  <Container:Directory><rdf:Seq>
   <rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg" Item:Semantic="Primary"
     Item:Length="0" Item:Padding="{padding}"/></rdf:li>
   <rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto"
     Item:Length="{length}" Item:Padding="0"/></rdf:li>
  </rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>"""


def samsung_trailer(mp4: bytes) -> bytes:
    """Samsung's SEF layout: a named data block holding the MP4, then the SEFH index and SEFT."""
    name = b"MotionPhoto_Data"
    block = b"\x00\x00\x30\x0a" + struct.pack("<I", len(name)) + name + mp4
    index = b"SEFH" + struct.pack("<II", 106, 1) + struct.pack("<HHII", 0, 0x0A30, len(block) + 8, len(block))
    return block + index + struct.pack("<I", len(index)) + b"SEFT"


def motion_photos(tmp_path: Path) -> dict[str, tuple[bytes, bytes, MotionClip | None]]:
    """name -> (file bytes, the plain JPEG inside, the clip expected)."""
    mp4 = clip(tmp_path)
    plain = still()
    google = with_xmp(plain, google_xmp(len(mp4)))
    micro = with_xmp(plain, f'<x:xmpmeta><rdf:Description GCamera:MicroVideo="1" GCamera:MicroVideoVersion="1" '
                            f'GCamera:MicroVideoOffset="{len(mp4)}"/></x:xmpmeta>')
    samsung = plain + samsung_trailer(mp4)
    return {
        "google": (google + mp4, google, MotionClip(len(google), len(mp4), "xmp", 1250000)),
        "microvideo": (micro + mp4, micro, MotionClip(len(micro), len(mp4), "microvideo")),
        "samsung": (samsung, plain, MotionClip(len(plain) + 4 + 4 + 16, len(mp4), "samsung")),
        "appended": (plain + mp4, plain, MotionClip(len(plain), len(mp4), "trailer")),
        "plain": (plain, plain, None),
        "junk-after": (plain + random.Random(1).randbytes(5000), plain, None),
        "cut-clip": (plain + mp4[:len(mp4) // 2], plain, None),
    }


def test_a_motion_photo_s_still_decodes_as_the_plain_jpeg_and_its_clip_is_found(tmp_path: Path) -> None:
    for name, (data, jpeg, expected) in motion_photos(tmp_path).items():
        path, reference = tmp_path / f"{name}.jpg", tmp_path / f"{name}-plain.jpg"
        path.write_bytes(data)
        reference.write_bytes(jpeg)
        found, plain_meta = [], []
        assert np.array_equal(through_bounded_reader(path, found), through_bounded_reader(reference, plain_meta)), name
        assert found == plain_meta
        assert jpeg_end(data) == len(jpeg), name
        with open(path, "rb") as handle:
            assert find_motion_clip(handle) == expected, name


def test_the_clip_found_is_a_video_that_samples(tmp_path: Path) -> None:
    data, _, expected = motion_photos(tmp_path)["google"]
    assert expected is not None
    found = find_motion_clip(io.BytesIO(data))
    assert found == expected
    video = sample_video(io.BytesIO(data[found.offset:found.offset + found.length]), VideoLimits(), 224)
    assert abs(video.info.duration - 2.5) < 0.2 and video.frames[0].image.size == (320, 240)
