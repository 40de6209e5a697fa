"""The frame codec: length-prefixed JSON objects, whole or in pieces."""

from __future__ import annotations

import socket

import pytest

from workstream.proc.frames import (
    HEADER,
    MAX_FRAME,
    FrameDecoder,
    FrameError,
    encode,
    encode_all,
    read_batches,
)


def test_frames_round_trip_whole_and_split_anywhere() -> None:
    messages = [{"op": "run", "n": index, "text": "é" * index} for index in range(5)]
    data = encode_all(messages)
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert got == messages
        assert decoder.pending == 0


def test_a_partial_frame_waits_for_the_rest() -> None:
    data = encode({"op": "done"})
    decoder = FrameDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.pending == len(data) - 1
    assert decoder.feed(data[-1:]) == [{"op": "done"}]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (HEADER.pack(MAX_FRAME + 1), "more than"),
        (HEADER.pack(3) + b"{x}", "not JSON"),
        (HEADER.pack(2) + b"[]", "not a JSON object"),
    ],
)
def test_bytes_that_are_not_frames_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        FrameDecoder().feed(data)


def test_nan_is_not_sent() -> None:
    with pytest.raises(ValueError):
        encode({"x": float("nan")})


def test_read_batches_yields_what_each_read_completed_until_eof() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(encode_all([{"n": 1}, {"n": 2}]))
        left.shutdown(socket.SHUT_WR)
        batches = list(read_batches(right))
    assert [frame for batch in batches for frame in batch] == [{"n": 1}, {"n": 2}]
