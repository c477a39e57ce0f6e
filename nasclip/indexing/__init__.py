"""Turning photos into vectors: the indexer, decoding, the encoder, tokenizers, backends."""
