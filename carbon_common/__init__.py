"""Pieces both services share: the snapshot contract, RFC 3339 time handling and JSON-lines logging."""
