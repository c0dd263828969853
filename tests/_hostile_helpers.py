"""Paths that are not regular files, and a guard that turns a hang into a failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

#: Seconds an entry point may take to refuse a special file before it counts as hung.
HANG_LIMIT = float(os.environ.get("SKSPLICE_TEST_HANG_LIMIT", "20"))

# Run in its own process, so it works even when the blocked open holds the GIL
# (a Rust or C reader): after the limit, open each pipe for writing whenever a
# reader waits on it, which releases that reader with end-of-file.
_WATCHDOG = """
import os, sys, time
limit, fifos = float(sys.argv[1]), sys.argv[2:]
time.sleep(limit)
end = time.monotonic() + 10
while time.monotonic() < end:
    for fifo in fifos:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    time.sleep(0.05)
"""


def make_fifo(path):
    """A named pipe at ``path`` with no writer: opening it for reading would wait forever."""
    os.mkfifo(path)
    return path


def make_socket(path):
    """A listening Unix socket file at ``path``; returns (path, socket) (close the socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return path, sock


def call_without_hanging(fn, fifos=(), limit=HANG_LIMIT):
    """Call ``fn()``; return what it raised (or None), failing if it waited on a pipe.

    A watchdog process releases any reader blocked on one of ``fifos`` after
    ``limit`` seconds; a call that took that long fails the test, so a
    regression fails instead of hanging the suite.
    """
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(limit),
                                 *map(str, fifos)]) if fifos else None
    start = time.monotonic()
    error = None
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - handed back to the test
        error = exc
    finally:
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
    if time.monotonic() - start >= limit:
        pytest.fail(f"{fn!r} waited on a special file for {limit} s or more")
    return error
