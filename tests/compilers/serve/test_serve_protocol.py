"""One write per answer (compilers/serve/protocol.py): the held head goes out with the body, on its own when
no body follows, and never holds a 100 Continue or a whole response."""

from __future__ import annotations

from nngraph.compilers.serve.protocol import _HeldHead


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


def test_the_head_leaves_with_the_body_in_one_write():
    t = _Transport()
    held = _HeldHead(t)  # type: ignore[arg-type]
    held.write(HEAD)
    assert t.writes == []
    held.write(b"hello")
    held.write(HEAD)
    held.write(b"world")
    assert t.writes == [HEAD + b"hello", HEAD + b"world"]


def test_a_head_without_a_body_goes_out_on_completion_or_close():
    t = _Transport()
    held = _HeldHead(t)  # type: ignore[arg-type]
    held.write(HEAD)
    held.flush()
    held.write(HEAD)
    held.close()
    assert t.writes == [HEAD, HEAD] and t.closed


def test_continue_and_whole_responses_pass_at_once():
    t = _Transport()
    held = _HeldHead(t)  # type: ignore[arg-type]
    held.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    whole = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad"
    held.write(whole)
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", whole]
