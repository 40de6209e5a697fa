"""Length-prefixed JSON frames: the one format on a worker process's socket pair.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON (an object). Both
sides write every frame waiting at that moment with one `sendall`, so a busy pool pays one
system call per batch, not per job.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterable, Iterator
from typing import Any

HEADER = struct.Struct(">I")
# A job's payload and a result are each at most 1 MiB of JSON; a frame carries one job.
MAX_FRAME = 16 * 1024 * 1024
READ_SIZE = 256 * 1024

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class FrameError(ValueError):
    """The bytes on the socket are not frames: the other side is broken or not ours."""


def encode(message: dict[str, Any]) -> bytes:
    body = _encoder.encode(message).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise FrameError(f"a frame of {len(body)} bytes is more than {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def encode_all(messages: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(encode(message) for message in messages)


class FrameDecoder:
    """Bytes in, whole frames out; a partial frame waits for the rest."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        frames: list[dict[str, Any]] = []
        view = self._buffer
        start = 0
        while len(view) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(view, start)
            if size > MAX_FRAME:
                raise FrameError(f"a frame header says {size} bytes, more than {MAX_FRAME}")
            end = start + HEADER.size + size
            if len(view) < end:
                break
            try:
                message = json.loads(bytes(view[start + HEADER.size : end]))
            except ValueError as exc:
                raise FrameError(f"a frame is not JSON: {exc}") from None
            if not isinstance(message, dict):
                raise FrameError("a frame is not a JSON object")
            frames.append(message)
            start = end
        del self._buffer[:start]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held (not 0 at EOF: the other side died mid-write)."""
        return len(self._buffer)


def read_batches(sock: socket.socket) -> Iterator[list[dict[str, Any]]]:
    """Every frame that one `recv` completed, as a list, until EOF (then it returns).
    Raises FrameError for bytes that are not frames, OSError for a broken socket."""
    decoder = FrameDecoder()
    while True:
        data = sock.recv(READ_SIZE)
        if not data:
            return
        frames = decoder.feed(data)
        if frames:
            yield frames
