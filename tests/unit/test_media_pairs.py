"""Issue 18: which files of a folder are one picture (RAW+JPEG, Live Photo), and which names are which kind."""

from __future__ import annotations

import random

from nasclip.config import DEFAULT_EXTENSIONS
from nasclip.media.formats import PHOTO_EXTENSIONS, RAW_EXTENSIONS, VIDEO_EXTENSIONS, kind_of, media_extensions
from nasclip.media.pairs import LivePhoto, RawPair, folder_pairs


def test_a_raw_and_a_jpeg_of_the_same_stem_are_one_shot_whatever_the_case() -> None:
    pairs = folder_pairs(["IMG_0042.CR3", "img_0042.jpg", "IMG_0043.JPG", "IMG_0044.NEF"])
    assert pairs.raw_pairs == (RawPair("img_0042.jpg", ("IMG_0042.CR3",)),)
    assert pairs.not_shown_alone() == {"IMG_0042.CR3"}
    assert pairs.original_of("img_0042.jpg") == ("IMG_0042.CR3",) and pairs.original_of("IMG_0043.JPG") == ()
    assert pairs.not_indexed() == frozenset()


def test_every_raw_format_pairs_with_jpeg_or_heif() -> None:
    names = [f"DSC{i:04d}{ext.upper()}" for i, ext in enumerate(RAW_EXTENSIONS)]
    names += [f"DSC{i:04d}.{'HEIF' if i % 2 else 'jpg'}" for i in range(len(RAW_EXTENSIONS))]
    pairs = folder_pairs(names)
    assert len(pairs.raw_pairs) == len(RAW_EXTENSIONS)
    assert all(len(p.originals) == 1 and kind_of(p.originals[0]) == "raw" for p in pairs.raw_pairs)


def test_a_live_photo_s_clip_is_not_indexed_and_its_still_is_the_photo() -> None:
    pairs = folder_pairs(["IMG_1001.HEIC", "IMG_1001.MOV", "IMG_1002.JPG", "IMG_1002.mov", "IMG_1003.MOV",
                          "trip.mp4", "trip.jpg"])
    assert pairs.live_photos == (LivePhoto("IMG_1001.HEIC", "IMG_1001.MOV"), LivePhoto("IMG_1002.JPG", "IMG_1002.mov"))
    assert pairs.not_indexed() == {"IMG_1001.MOV", "IMG_1002.mov"}  # a MOV alone is a video; an MP4 is never a clip
    assert pairs.raw_pairs == ()


def test_with_several_stills_the_jpeg_is_shown_and_both_partners_attach_to_it() -> None:
    pairs = folder_pairs(["IMG_7.HEIC", "IMG_7.JPG", "IMG_7.DNG", "IMG_7.MOV", "IMG_7.jpeg"])
    assert pairs.raw_pairs == (RawPair("IMG_7.JPG", ("IMG_7.DNG",)),)
    assert pairs.live_photos == (LivePhoto("IMG_7.JPG", "IMG_7.MOV"),)
    assert pairs.not_shown_alone() == {"IMG_7.DNG", "IMG_7.MOV"}


def test_two_raws_of_one_shot_are_both_its_originals() -> None:
    pairs = folder_pairs(["P1.RAF", "P1.dng", "P1.JPG"])
    assert pairs.raw_pairs == (RawPair("P1.JPG", ("P1.RAF", "P1.dng")),)


def test_a_raw_without_a_still_and_stems_that_only_look_alike_are_left_alone() -> None:
    pairs = folder_pairs(["IMG_1.CR2", "IMG_1.JPG.CR2", "IMG_10.JPG", "IMG_1.xmp", "IMG_1 .JPG", "IMG_2.mov"])
    assert pairs.raw_pairs == () and pairs.live_photos == ()


def test_names_as_bytes_come_back_as_bytes_and_non_utf8_names_work() -> None:
    odd = b"caf\xe9"  # Latin-1, as an old SMB client wrote it
    pairs = folder_pairs([odd + b".NEF", odd + b".jpg", b"x.HEIC", b"X.MOV"])
    assert pairs.raw_pairs == (RawPair(odd + b".jpg", (odd + b".NEF",)),)
    assert pairs.live_photos == (LivePhoto(b"x.HEIC", b"X.MOV"),)


def test_the_answer_does_not_depend_on_the_order_of_the_names() -> None:
    names = ["A.JPG", "A.CR3", "B.HEIC", "B.MOV", "C.ARW", "C.jpg", "c.MOV", "D.png", "E.mp4"]
    first = folder_pairs(names)
    for seed in range(20):
        shuffled = names[:]
        random.Random(seed).shuffle(shuffled)
        assert folder_pairs(shuffled) == first
    assert first.not_indexed() == {"B.MOV", "c.MOV"}


def test_kinds_by_extension_and_the_extension_lists_agree() -> None:
    assert kind_of("a.JXL") == "photo" and kind_of(b"b.Cr3") == "raw" and kind_of("c.M2TS") == "video"
    assert kind_of("notes.txt") is None and kind_of("noextension") is None
    assert set(media_extensions(("video",))) == set(VIDEO_EXTENSIONS)
    every = media_extensions()
    assert len(every) == len(set(every)) == len(PHOTO_EXTENSIONS) + len(RAW_EXTENSIONS) + len(VIDEO_EXTENSIONS)
    assert every[:len(PHOTO_EXTENSIONS)] == PHOTO_EXTENSIONS
    # A share indexes all of them unless told otherwise (issue 18, phase 2).
    assert DEFAULT_EXTENSIONS == every
