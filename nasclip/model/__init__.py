"""Model folders: the manifest, the registry, download, install, export and quantize."""
