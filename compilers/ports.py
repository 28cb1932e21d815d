"""A free TCP port on 127.0.0.1, for what nngraph starts locally: the trainer's rendezvous (torchrun's c10d
store) and a child ``nngraph serve`` process (:mod:`.serve.process`)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
