"""The command-line entry points (nasclipd, nasclip, nasclip-query) and their shared helpers."""
