"""What fairing remembers between builds and processes, so a re-submit asks nothing it knows.

One SQLite database, ``state.sqlite3`` under the cache directory (default
``~/.cache/fairing``), holds three small tables:

* ``blobs``: the blobs known to exist in a registry repository (pushed, mounted or seen
  there), so a re-submit neither checks nor mounts them again. A registry that garbage-
  collected one answers ``MANIFEST_BLOB_UNKNOWN`` to the manifest; the builder then
  forgets that repository (:meth:`State.forget_repository`) and checks everything again.
* ``tags``: a base image tag's manifest digest and when it was looked up; within
  ``max_age`` seconds a build uses it without asking the registry.
* ``layers``: a layer's digest, diff_id and size per *stat key*: the sha256 of the layer's
  entries (names, modes) and, per file on disk, its size, mtime, ctime, inode and device
  (any write, rename over or ``touch`` changes one of them), plus the compressor and
  level. An unchanged data directory is then not read at all.

Why SQLite (the standard library's): it is safe for several processes at once (two
notebooks submitting together), writes are atomic, and a lookup costs microseconds.
Every table is capped (:data:`MAX_ROWS`, oldest rows dropped first); the file-based
caches beside it (base manifests, requirement layers) are pruned by
:func:`prune_directory`. A cache that cannot be opened (read-only home, corrupt file)
is replaced by an in-memory one: slower re-submits, never a failed build.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional

__all__ = ["State", "state_for", "prune_directory", "MAX_ROWS"]

log = logging.getLogger(__name__)

#: Rows kept per table; the oldest are dropped beyond it.
MAX_ROWS = 50_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (host TEXT, repo TEXT, digest TEXT, at REAL, PRIMARY KEY (host, repo, digest));
CREATE TABLE IF NOT EXISTS tags (ref TEXT PRIMARY KEY, digest TEXT, at REAL);
CREATE TABLE IF NOT EXISTS layers (key TEXT PRIMARY KEY, digest TEXT, diff_id TEXT, size INTEGER, at REAL);
"""


class State:
    """The database under ``directory`` (``None``: in memory only). Safe across threads and processes."""

    def __init__(self, directory: "str | os.PathLike[str] | None") -> None:
        import sqlite3

        self._lock = threading.Lock()
        self.path = None if directory is None else Path(directory) / "state.sqlite3"
        db = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                db = None  # unusable (corrupt, read-only): remember in memory only
                log.info("the cache %s cannot be used (%s); remembering in memory for this process", self.path, exc)
        if db is None:
            self.path = None
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
        self._db = db
        self._writes = 0
        self._memo: dict = {}

    # -- parsed values, in this process only ------------------------------------------------

    def memo_get(self, key: tuple) -> Any:
        """A value kept with :meth:`memo_put` (a resolved base image...), or None. Only
        content-addressed values belong here: they are never stale."""
        with self._lock:
            return self._memo.get(key)

    def memo_put(self, key: tuple, value: Any, *, limit: int = 32) -> None:
        with self._lock:
            if len(self._memo) >= limit:
                self._memo.clear()
            self._memo[key] = value

    def _run(self, sql: str, args: Iterable = ()) -> list:
        import sqlite3

        with self._lock:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except sqlite3.DatabaseError:
                return []  # a cache never fails a build

    def _write(self, sql: str, rows: list) -> None:
        import sqlite3

        if not rows:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.DatabaseError:
                    pass
                return
            self._writes += len(rows)
            if self._writes >= 1000:
                self._writes = 0
                for table in ("blobs", "tags", "layers"):
                    self._db.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                                     f"ORDER BY at DESC LIMIT -1 OFFSET {MAX_ROWS})")

    # -- blobs known to exist -------------------------------------------------------------

    def known_blobs(self, host: str, repo: str) -> set[str]:
        return {r[0] for r in self._run("SELECT digest FROM blobs WHERE host=? AND repo=?", (host, repo))}

    def add_blobs(self, host: str, repo: str, digests: Iterable[str]) -> None:
        now = time.time()
        self._write("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?)", [(host, repo, d, now) for d in set(digests)])

    def forget_repository(self, host: str, repo: str) -> None:
        self._write("DELETE FROM blobs WHERE host=? AND repo=?", [(host, repo)])

    # -- base tags ------------------------------------------------------------------------

    def tag_digest(self, ref: str, max_age: float) -> Optional[str]:
        rows = self._run("SELECT digest, at FROM tags WHERE ref=?", (ref,))
        if rows and 0 <= time.time() - rows[0][1] <= max_age:
            return rows[0][0]
        return None

    def put_tag(self, ref: str, digest: str) -> None:
        self._write("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", [(ref, digest, time.time())])

    def forget_tag(self, ref: str) -> None:
        self._write("DELETE FROM tags WHERE ref=?", [(ref,)])

    # -- layers by stat key ---------------------------------------------------------------

    def layer(self, key: str) -> Optional[tuple[str, str, int]]:
        rows = self._run("SELECT digest, diff_id, size FROM layers WHERE key=?", (key,))
        return (rows[0][0], rows[0][1], int(rows[0][2])) if rows else None

    def put_layer(self, key: str, digest: str, diff_id: str, size: int) -> None:
        self._write("INSERT OR REPLACE INTO layers VALUES (?, ?, ?, ?, ?)", [(key, digest, diff_id, size, time.time())])

    def close(self) -> None:
        with self._lock:
            self._db.close()


_STATES: dict = {}
_STATES_LOCK = threading.Lock()


def state_for(directory: "str | os.PathLike[str]") -> State:
    """The process's one :class:`State` for ``directory`` (opened once, shared by builders)."""
    key = os.path.abspath(directory)
    with _STATES_LOCK:
        state = _STATES.get(key)
        if state is None:
            state = _STATES[key] = State(key)
        return state


def prune_directory(directory: Path, max_bytes: int, *, pattern: str = "*") -> int:
    """Delete the least recently modified files matching ``pattern`` under ``directory``
    until at most ``max_bytes`` remain; returns the bytes freed. Files other processes
    still write are replaced atomically (``os.replace``), so deleting one is safe."""
    files = []
    total = 0
    for path in directory.rglob(pattern):
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file() and not path.name.startswith(".tmp-"):
            files.append((st.st_mtime, st.st_size, path))
            total += st.st_size
    freed = 0
    for _mtime, size, path in sorted(files):
        if total - freed <= max_bytes:
            break
        try:
            path.unlink()
            freed += size
        except OSError:
            pass
    return freed
