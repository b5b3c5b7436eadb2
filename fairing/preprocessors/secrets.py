"""Keeping credentials out of build contexts: file names that are credentials, and one content scan.

:data:`CREDENTIAL_FILES` are gitignore-style patterns of files that hold credentials,
gathered from GitHub's gitignore templates (Node/Python ``.env*``, Terraform
``*.tfvars``/``*.tfstate``, Java keystores, Google's ``credentials.json``), the
path rules of gitleaks (``.pypirc``, ``.npmrc``, ``.pgpass``, ``.s3cfg``...) and the
files detect-secrets and cloud CLIs are known to write (``.boto``,
``application_default_credentials.json``, ``kaggle.json``, ``.vault-token``). They
are checked apart from the user's ignore rules, so a negation (``!.env``) cannot
re-include one; naming the file in ``input_files`` passes the name rule, never the scan.

:func:`check_files` is the one scan every byte fairing ships goes through (walked and
named input files, link targets, the entry script, the script made from a notebook,
a notebook with its saved outputs, the pickled function, local module sources,
requirement files): every preprocessor calls it through
:func:`fairing.preprocessors.base.payload_context`. What it recognises:

- private keys (PEM headers, and PEM keys base64-encoded as in a kubeconfig's
  ``client-key-data`` or a Kubernetes Secret's ``data``);
- tokens with a fixed, well-known shape (the formats gitleaks and detect-secrets detect
  by prefix: AWS access keys, GitHub, GitLab, Slack, Stripe, Google API and OAuth,
  Hugging Face, npm, PyPI, OpenAI and Anthropic keys, JSON Web Tokens, and URLs with a
  password);
- credential files by their shape, whatever their name: kubeconfigs (``kind: Config``
  with a user ``token``/``password``; kubeadm's ``admin.conf``), Docker auth files
  (``"auths"`` with an ``"auth"``), Google OAuth client and token JSON
  (``client_secret``, ``refresh_token``: the quickstart's ``credentials.json`` and
  ``token.json``), service-account JSON (``"type": "service_account"``) and Kubernetes
  Secret manifests with ``data``/``stringData`` (a pull secret's base64 ``.dockerconfigjson``).

A file is read whole, as a stream (1 MiB at a time, so its size costs time, never
memory), in UTF-8 or any ASCII-compatible encoding, and also decoded as UTF-16 when it
starts with a UTF-16 byte-order mark or looks like BOM-less UTF-16 (NUL bytes on one
side of every pair, as PowerShell's ``>`` writes). A file that cannot be read whole is
refused. A file unchanged since it was last scanned (same inode, size and modification
time) is not read again in the same process.

``pragma: allowlist secret`` (detect-secrets' marker) exempts exactly one finding: the
nearest one before it on its line (or, when none precedes it, the next one after it on
that line). A line with two tokens needs two pragmas; a long one-line file with many
tokens and one pragma is still refused for the others.

Written here rather than taken from detect-secrets (its last release is from 2024): it
reads text files line by line after decoding them, skips binary files (a key renamed
``model.bin``), has no UTF-16 view, and flags every hash of a lock file with its entropy
heuristics; this is a table of regular expressions and a streaming loop.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import errno
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

__all__ = ["CREDENTIAL_FILES", "Finding", "Described", "scan", "scan_bytes", "scan_notebook", "check_files",
           "credential_spec"]

CREDENTIAL_FILES = (
    # directories of credentials
    ".aws/", ".azure/", ".ssh/", ".gnupg/", ".kube/", ".docker/", "**/.config/gcloud/", ".kaggle/",
    ".terraform.d/", ".databricks/", ".huggingface/",
    # environment files (GitHub's Node and Python templates), examples excepted
    ".env", ".env.*", "*.env", ".envrc", "!.env.example", "!.env.sample", "!.env.template", "!*.env.example",
    # keys, certificates with private parts, keystores
    "*.pem", "*.key", "*.p12", "*.pfx", "*.pkcs12", "*.p8", "*.jks", "*.keystore", "*.ppk", "*.keytab",
    "id_rsa", "id_rsa.*", "id_dsa", "id_dsa.*", "id_ecdsa", "id_ecdsa.*", "id_ed25519", "id_ed25519.*",
    # cloud and tool credentials
    "credentials.json", "client_secret*.json", "application_default_credentials.json", "service-account*.json",
    "*-service-account.json", "gcloud-service-key.json", "*-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]"
    "[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f].json",  # a GCP key: <project>-<12 hex>.json
    ".boto", ".s3cfg", ".pgpass", ".my.cnf", ".dockercfg", ".vault-token", "kaggle.json", ".netrc", "_netrc",
    ".npmrc", ".yarnrc.yml", ".pypirc", ".git-credentials", ".htpasswd", ".databrickscfg",
    "kubeconfig", "*.kubeconfig", "kubeconfig.*",
    "terraform.tfvars", "*.tfvars", "*.tfvars.json", "*.tfstate", "*.tfstate.*", ".terraformrc", "terraform.rc",
    "credentials.tfrc.json",
    "secrets.yaml", "secrets.yml", "secrets.json", "secrets.toml", "*.secrets.yaml",
)

_CHUNK = 1 << 20
#: Bytes of context kept between chunks: longer than the shortest match of any expression.
_OVERLAP = 4096
#: Findings on one line kept waiting for a pragma after them (older ones are reported).
_PENDING_LIMIT = 10_000


from .._tokens import _ALLOW, _COMPILED, _MARKERS


_CACHE: dict[tuple, list] = {}  # (path, device, inode, size, mtime, ctime) -> findings: not read again
_SCANNED: set[str] = set()  # real paths of the files check_files scanned: packing them checks them again


@dataclass(frozen=True)
class Finding:
    """What looks like a secret, and where (never the secret itself): ``line`` in the file
    scanned; ``where`` when a better place is known ("cell 3, line 2")."""

    kind: str
    line: int
    where: str = ""

    def __str__(self) -> str:
        return f"{self.kind} ({self.where or f'line {self.line}'})"


class _Scanner:
    """Findings in a byte stream fed in pieces, with the pragma rule applied."""

    def __init__(self) -> None:
        self.buffer = b""
        self.first = True  # no context byte at the start of the buffer
        self.line = 1  # line number at buffer[0]
        self.seen_markers: set[bytes] = set()
        self.current_line = 0
        self.pending: list[tuple[str, Optional[bytes]]] = []  # findings on current_line, in order
        self.credit = 0  # pragmas on current_line with no finding before them
        self.found: dict[tuple[str, Optional[bytes]], int] = {}  # (kind, marker) -> first line

    def feed(self, data: bytes, last: bool = False) -> None:
        buf = self.buffer + data
        if not last and len(buf) < 2 * _OVERLAP:
            self.buffer = buf
            return
        accept_from = 0 if self.first else 1
        accept_to = len(buf) if last else len(buf) - _OVERLAP
        for marker, rx in _MARKERS.items():
            if marker not in self.seen_markers and rx.search(buf):
                self.seen_markers.add(marker)
        events = []
        for kind, rx, check, marker in _COMPILED:
            for m in rx.finditer(buf, accept_from):
                start = m.start()
                if start >= accept_to:
                    break
                if check(buf, start, m):
                    events.append((start, 1, kind, marker))
        for m in _ALLOW.finditer(buf, accept_from):
            if m.start() >= accept_to:
                break
            events.append((m.start(), 0, "", None))
        events.sort(key=lambda e: (e[0], -e[1]))
        line, pos = self.line, 0
        for start, is_finding, kind, marker in events:
            line += buf.count(b"\n", pos, start)
            pos = start
            if line != self.current_line:
                self._flush()
                self.current_line = line
            if is_finding:
                if self.credit:
                    self.credit -= 1
                else:
                    self.pending.append((kind, marker))
                    if len(self.pending) > _PENDING_LIMIT:
                        self._confirm(*self.pending.pop(0))
            elif self.pending:
                self.pending.pop()
            else:
                self.credit += 1
        if last:
            self._flush()
            self.buffer = b""
            return
        cut = accept_to - 1
        self.line += buf.count(b"\n", 0, cut)
        self.buffer = buf[cut:]
        self.first = False

    def _confirm(self, kind: str, marker: Optional[bytes]) -> None:
        self.found.setdefault((kind, marker), self.current_line)

    def _flush(self) -> None:
        for kind, marker in self.pending:
            self._confirm(kind, marker)
        self.pending, self.credit = [], 0

    def findings(self) -> list[Finding]:
        first: dict[str, int] = {}
        for (kind, marker), line in self.found.items():
            if marker is None or marker in self.seen_markers:
                first[kind] = min(line, first.get(kind, line))
        return sorted((Finding(kind, line) for kind, line in first.items()), key=lambda f: (f.line, f.kind))


def _utf16(sample: bytes) -> Optional[str]:
    """"utf-16-le"/"utf-16-be" when ``sample`` (a file's start) looks like UTF-16 text."""
    if sample.startswith(codecs.BOM_UTF16_LE) and not sample.startswith(codecs.BOM_UTF32_LE):
        return "utf-16-le"
    if sample.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    pairs = len(sample) // 2
    if pairs < 4:
        return None
    even, odd = sample[0:pairs * 2:2].count(0), sample[1:pairs * 2:2].count(0)
    if odd >= 0.3 * pairs and even <= 0.05 * pairs:
        return "utf-16-le"
    if even >= 0.3 * pairs and odd <= 0.05 * pairs:
        return "utf-16-be"
    return None


def _merge(*lists: list[Finding]) -> list[Finding]:
    first: dict[str, Finding] = {}
    for found in lists:
        for f in found:
            if f.kind not in first or f.line < first[f.kind].line:
                first[f.kind] = f
    return sorted(first.values(), key=lambda f: (f.line, f.kind))


#: Seven ASCII characters of UTF-16 text (either byte order, either alignment).
_WIDE_RUN = re.compile(rb"\x00[\t\n\r\x20-\x7e]" * 7 + rb"\x00")


def _may_hold_wide_text(chunk: bytes) -> bool:
    """Whether ``chunk`` may hold UTF-16 (or UTF-32) text somewhere: a file whose start is
    not UTF-16 can still have some later (PowerShell 5's ``>>`` appends UTF-16 to a UTF-8
    file). Cheap on the chunks most files are made of: none for text, no search for
    sparse (all-NUL) runs."""
    nuls = chunk.count(0)
    if not nuls:
        return False
    if nuls * 4 > len(chunk):  # mostly NUL: UTF-32, UTF-16 or sparse; what is left is small
        return len(chunk) - nuls >= 8
    return _WIDE_RUN.search(chunk) is not None


_NULS = bytes(2 * _OVERLAP)


def _scan_stream(read: Callable[[int], bytes]) -> list[Finding]:
    raw = _Scanner()
    wide: Optional[_Scanner] = None
    narrow: Optional[_Scanner] = None  # the bytes without NULs, from where UTF-16 text shows up
    newlines_before, previous_tail = 0, b""
    decoder = None
    current = read(_CHUNK)
    encoding = _utf16(current[:4096])
    if encoding is not None:
        wide = _Scanner()
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        if current.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            decoder.decode(current[:2])
            current = current[2:]  # the raw view loses the BOM only, which holds no secret
    while True:
        following = read(_CHUNK) if current else b""
        last = not following
        if len(current) > len(_NULS) and current.count(0) == len(current):
            # a hole of a sparse file (or zero padding): no expression matches inside a NUL
            # run that one of 8 KiB would not match, so 1 GiB of holes costs a read, not a search
            current = _NULS if len(current) % 2 == 0 else _NULS + b"\x00"
        raw.feed(current, last)
        if wide is not None and decoder is not None:
            wide.feed(decoder.decode(current, final=last).encode("utf-8", "surrogatepass"), last)
        elif narrow is None and _may_hold_wide_text(current):
            narrow = _Scanner()
            narrow.line = 1 + newlines_before - previous_tail.count(b"\n")
            narrow.feed(previous_tail.replace(b"\x00", b""))  # a token may start in the chunk before
        if narrow is not None:
            narrow.feed(current.replace(b"\x00", b""), last)
        if last:
            break
        newlines_before += current.count(b"\n")
        previous_tail = current[-_OVERLAP:]
        current = following
    return _merge(raw.findings(), wide.findings() if wide is not None else [],
                  narrow.findings() if narrow is not None else [])


class NotARegularFile(OSError):
    """``path`` is a FIFO, a socket or a device: reading it could wait forever or never end."""


def scan(path: os.PathLike | str) -> list[Finding]:
    """The secrets found in the whole of ``path`` (read as a stream). A path that is not a
    regular file (a FIFO, a socket, a device) is :class:`NotARegularFile`: it is opened
    without blocking and checked on the open file, so a FIFO never makes the scan wait."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file (a FIFO, socket or device)", str(path))
        # the change time too: a rewrite that keeps the size and restores the modification
        # time (cp -p, rsync -t, tar x, os.utime) still changes it
        key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in _CACHE:
            _CACHE[key] = _scan_stream(fh.read)
    return list(_CACHE[key])


def scan_bytes(data: bytes) -> list[Finding]:
    """The secrets found in ``data``."""
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        piece = bytes(view[pos:pos + n])
        pos += len(piece)
        return piece

    return _scan_stream(read)


# -- notebooks ------------------------------------------------------------------------------


def _notebook_text(value) -> str:
    if isinstance(value, list):
        return "".join(v if isinstance(v, str) else "" for v in value)
    return value if isinstance(value, str) else ""


def _output_texts(output: Mapping) -> list[str]:
    import json

    texts = [_notebook_text(output.get("text")), _notebook_text(output.get("evalue")),
             "\n".join(t for t in output.get("traceback") or [] if isinstance(t, str))]
    data = output.get("data")
    if isinstance(data, Mapping):
        texts += [json.dumps(v) if isinstance(v, dict) else _notebook_text(v) for v in data.values()]
    return [t for t in texts if t]


def scan_notebook(path: os.PathLike | str) -> list[Finding]:
    """The secrets in a notebook file, placed in their cell ("cell 3, line 2", "cell 4,
    output") where the notebook can be read; the whole file is scanned in any case."""
    import json

    whole = scan(path)
    try:
        with open(path, encoding="utf-8") as fh:
            notebook = json.load(fh)
        cells = notebook.get("cells") if isinstance(notebook, dict) else None
        if not isinstance(cells, list):
            return whole
    except (ValueError, OSError, UnicodeDecodeError):
        return whole
    placed: list[Finding] = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, Mapping):
            continue
        for f in scan_bytes(_notebook_text(cell.get("source")).encode("utf-8", "surrogatepass")):
            placed.append(Finding(f.kind, f.line, f"cell {number}, line {f.line}"))
        attachments = cell.get("attachments")
        for name, bundle in (attachments.items() if isinstance(attachments, Mapping) else ()):
            for data in (bundle.values() if isinstance(bundle, Mapping) else ()):
                # base64 in the file, so only its decoded bytes can show a token
                try:
                    decoded = base64.b64decode(_notebook_text(data), validate=False)
                except (binascii.Error, ValueError):
                    continue
                for f in scan_bytes(decoded):
                    placed.append(Finding(f.kind, f.line, f"cell {number}, attachment {name}, line {f.line}"))
        for index, output in enumerate(cell.get("outputs") or [], 1):
            if isinstance(output, Mapping):
                for text in _output_texts(output):
                    for f in scan_bytes(text.encode("utf-8", "surrogatepass")):
                        placed.append(Finding(f.kind, f.line, f"cell {number}, output {index}, line {f.line}"))
    placed_kinds = {f.kind for f in placed}
    # what the cells do not explain (metadata, attachments...) keeps the file's line
    return placed + [f for f in whole if f.kind not in placed_kinds]


# -- the one check --------------------------------------------------------------------------


@dataclass(frozen=True)
class Described:
    """How to name a shipped file in a refusal: ``name`` (its file on disk, or what it was
    made from) and ``where``, which places a line of it ("cell 3, line 2")."""

    name: str
    where: Optional[Callable[[int], str]] = None


def check_files(files: Mapping[str, object], *, described: Optional[Mapping[str, Described]] = None,
                skip: frozenset = frozenset()) -> None:
    """Refuse, naming each file and line, when any of ``files`` (image path -> a Path or
    bytes; links are skipped, their targets are files of their own) holds a secret."""
    from ..errors import PackagingError, SecretInContextError

    described = described or {}
    findings: dict[str, tuple[str, list[Finding]]] = {}
    for dest in sorted(files):
        source = files[dest]
        if dest in skip or not isinstance(source, (bytes, Path)):
            continue
        info = described.get(dest)
        name = info.name if info is not None else (str(source) if isinstance(source, Path) else dest)
        if isinstance(source, Path):
            _SCANNED.add(os.path.realpath(source))
        try:
            if isinstance(source, bytes):
                found = scan_bytes(source)
            elif dest.endswith(".ipynb") or source.suffix == ".ipynb":
                found = scan_notebook(source)
            else:
                found = scan(source)
        except OSError as exc:
            raise PackagingError(
                f"Cannot read {name} to check it for credentials ({exc.strerror or exc}), so fairing does not package "
                "it. Make it readable, or leave it out (.fairingignore)."
            ) from None
        if found and info is not None and info.where is not None:
            found = [Finding(f.kind, f.line, f.where or info.where(f.line)) for f in found]
        if found:
            findings[dest] = (name, found)
    if not findings:
        return
    lines = "\n".join(f"  {name} (in the image: {dest}): {', '.join(map(str, found))}"
                      if name != dest else f"  {dest}: {', '.join(map(str, found))}"
                      for dest, (name, found) in findings.items())
    raise SecretInContextError(
        f"Refusing to package {len(findings)} file(s) that hold what looks like a credential:\n{lines}\n"
        "Move the secret out of the project and give it to the job at run time (a Kubernetes Secret with "
        "secret_env, or an environment variable), or leave the file out with .fairingignore. A line that is a "
        "false positive can carry the comment 'pragma: allowlist secret' (it exempts one finding on its line).",
        paths=tuple(findings),
    )


def recheck(path: os.PathLike | str, st: os.stat_result) -> None:
    """Before a scanned file is packed (``st``: its stat now): when it changed since
    :func:`check_files` read it (an editor's autosave, a run writing its log between
    ``context()`` and the tar), scan it again and refuse a secret, so what is packed is what
    was scanned. Files the scan never saw (fairing's own) are left alone."""
    real = os.path.realpath(path)
    if real not in _SCANNED:
        return
    if _CACHE.get((real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)) == []:
        return  # unchanged since a scan that found nothing
    check_files({str(path): Path(path)})


@lru_cache(maxsize=1)
def credential_spec():
    """A pathspec matching :data:`CREDENTIAL_FILES`."""
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(CREDENTIAL_FILES)
