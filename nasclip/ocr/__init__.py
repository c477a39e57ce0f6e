"""Text in photos: a second, lower-priority pass that reads the words a photo shows.

``stage.py`` is the long-running part (claims indexed photos the CLIP pass
is done with, reads them, records their text through the Store);
``engine.py`` runs PP-OCRv4 (``detect.py`` finds text lines, ``recognize.py``
reads them) on ONNX Runtime with the model files of the installed
``rapidocr-onnxruntime`` package (``models.py``); ``textform.py`` is the
folded, searchable form of a text, the same for what is stored and what is
asked. docs/ocr.md explains the choices and what they cost.
"""
