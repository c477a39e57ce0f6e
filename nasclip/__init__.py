"""nasclip: search the photos on your NAS by describing them."""

__version__ = "0.1.0"
