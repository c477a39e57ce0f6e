"""Everything a NAS holds beside plain photos: videos, camera RAW, motion photos, file pairs.

``formats.py`` says which file names are which kind; ``video.py`` samples a
video's frames (``sampling.py`` decides which, ``container.py`` reads what the
container says of itself); ``raw.py`` turns a RAW into a picture; ``motion.py``
finds the clip a motion photo carries; ``pairs.py`` decides, from a folder's
names, which files are one shot (RAW+JPEG) or one Live Photo (still + MOV).
JPEG XL is an ordinary photo format in nasclip/indexing/imaging.py.
"""
