"""Raw-socket helpers for the tests that play a slow or broken HTTP client."""

from __future__ import annotations

import asyncio


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (a reset counts as closed)."""
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except ConnectionError:
        pass
    return received
