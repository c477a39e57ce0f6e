"""The one writer of on-disk state: the SQLite catalog, the FAISS vectors, checkpoints, recovery."""
