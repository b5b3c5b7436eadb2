"""``fairing doctor`` against a registry that accepts the connection and then trickles a byte
every second: no read timeout ever trips, and doctor hung for good (measured: still running
after 100 s). Each step now has a wall-clock limit; past it the step is a FAIL and the others run."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fairing import doctor
from fairing.settings import Settings


@pytest.fixture
def trickling_registry():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()
    conns: list = []

    def drip(conn):
        while not stop.wait(1.0):
            try:
                conn.send(b"H")  # never a whole status line
            except OSError:
                return

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    server.close()
    for conn in conns:
        conn.close()


def test_a_trickling_registry_is_a_fail_within_the_step_limit(trickling_registry, monkeypatch):
    monkeypatch.setattr(doctor, "STEP_LIMIT", 4.0)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    seen = []
    start = time.monotonic()
    checks = doctor.run_checks("docker", settings=Settings(registry=trickling_registry,
                                                           insecure_registries=(trickling_registry,)),
                               on_check=seen.append)
    took = time.monotonic() - start
    assert took < 4.0 * 3 + 10, took  # registry and base image steps bounded; Docker fails fast
    by_name = {c.name: c for c in checks}
    assert by_name["registry"].status == doctor.FAIL and "no answer within 4 s" in by_name["registry"].detail
    assert by_name["Docker engine"].status == doctor.FAIL  # the steps after it still ran
    assert seen == checks
