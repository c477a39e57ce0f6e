"""Answering searches: the socket protocol, the server, search, access checks, the client."""
