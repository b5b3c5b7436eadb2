"""fairing._cache: the state database and the size limits of the file caches."""

from __future__ import annotations

import os
import time

from fairing import _cache
from fairing.images.layers import LocalCache


def test_state_remembers_across_instances_and_forgets_a_repository(tmp_path):
    one = _cache.State(tmp_path)
    one.add_blobs("reg:5000", "team/app", ["sha256:a", "sha256:b"])
    one.add_blobs("reg:5000", "team/other", ["sha256:c"])
    one.put_tag("reg:5000/base:1", "sha256:base")
    one.put_layer("key", "sha256:d", "sha256:t", 12)
    two = _cache.State(tmp_path)  # another process, say
    assert two.known_blobs("reg:5000", "team/app") == {"sha256:a", "sha256:b"}
    assert two.tag_digest("reg:5000/base:1", 60) == "sha256:base"
    assert two.tag_digest("reg:5000/base:1", 0) is None  # max_age 0: always ask
    assert two.layer("key") == ("sha256:d", "sha256:t", 12) and two.layer("nope") is None
    two.forget_repository("reg:5000", "team/app")
    assert one.known_blobs("reg:5000", "team/app") == set()
    assert one.known_blobs("reg:5000", "team/other") == {"sha256:c"}


def test_a_corrupt_database_is_replaced_by_memory(tmp_path):
    (tmp_path / "state.sqlite3").write_bytes(b"this is not a database" * 100)
    state = _cache.State(tmp_path)
    assert state.path is None
    state.add_blobs("h", "r", ["sha256:x"])
    assert state.known_blobs("h", "r") == {"sha256:x"}


def test_tables_are_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache, "MAX_ROWS", 10)
    state = _cache.State(tmp_path)
    state.add_blobs("h", "r", [f"sha256:{i}" for i in range(1200)])  # pruning runs every 1000 writes
    assert len(state.known_blobs("h", "r")) == 10


def test_file_caches_are_pruned_oldest_first(tmp_path):
    cache = LocalCache(tmp_path)
    cache.max_blob_bytes = 2500
    for i in range(5):
        data = bytes([i]) * 1000
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        cache.put_blob(digest, data)
        path = cache._blob_path(digest)
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
        last = digest
    files = list((tmp_path / "blobs").rglob("*"))
    assert sum(p.stat().st_size for p in files if p.is_file()) <= 2500
    assert cache.get_blob(last) is not None  # the newest is kept
