"""Python requirements in pip's file format: parsing, index options, and redaction.

A requirements file is read as pip reads it: ``\\`` continues a line, ``#`` starts a
comment (at the start or after whitespace), ``-r``/``--requirement`` and
``-c``/``--constraint`` include another file *relative to the file that names it*,
and option lines (``--index-url``, ``--extra-index-url``, ``--find-links``, ``--pre``,
``--only-binary``...) are kept. Requirement lines keep their order and their
per-requirement options (``--hash=sha256:...``), so hashed files made with
``pip-compile --generate-hashes`` install as written. The requirement itself is checked
with :mod:`packaging` (the maintained parser of PEP 508); pip has no public API for
its own file parser, so the few option forms are handled here.

Index URLs may carry credentials (``https://user:TOKEN@host/simple``). They are held
in :class:`PipIndexes`, which builders hand to pip through its environment
(``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``), never in a requirements file, a layer, an
image history, an event or an error; :func:`redact` writes them as
``https://user:***@host``.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import ConfigurationError, EntryPointNotFoundError

__all__ = ["PipIndexes", "Requirements", "parse_requirements", "read_requirements_file", "redact",
           "split_index_options", "requirement_name"]

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]+)(?::(?P<pw>[^@/\s]*))?@")
_INDEX_OPTIONS = {"-i": "index_url", "--index-url": "index_url", "--extra-index-url": "extra"}
_INCLUDE_OPTIONS = {"-r": "requirement", "--requirement": "requirement", "-c": "constraint", "--constraint": "constraint"}
# Options pip accepts in a requirements file that take a value (global ones, kept as lines).
_VALUE_OPTIONS = {"-f", "--find-links", "--trusted-host", "--only-binary", "--no-binary", "--use-feature",
                  "-e", "--editable", "--config-settings", "--global-option"}
_FLAG_OPTIONS = {"--pre", "--prefer-binary", "--require-hashes", "--no-index"}


def redact(text: str) -> str:
    """``text`` with the password (or the lone token user) of every URL replaced by ``***``."""

    def sub(m: re.Match) -> str:
        if m.group("pw") is not None:
            return f"{m.group('scheme')}{m.group('user')}:***@"
        return f"{m.group('scheme')}***@"

    return _URL_CREDENTIALS.sub(sub, text)


def _has_credentials(url: str) -> bool:
    return _URL_CREDENTIALS.search(url) is not None


@dataclass(frozen=True)
class PipIndexes:
    """The package indexes pip uses. The repr and :meth:`redacted` never show a credential."""

    index_url: Optional[str] = None
    extra_index_urls: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"PipIndexes({self.redacted()!r})"

    def __bool__(self) -> bool:
        return bool(self.index_url or self.extra_index_urls)

    @property
    def has_credentials(self) -> bool:
        return any(_has_credentials(u) for u in self._urls())

    def _urls(self) -> list[str]:
        return [*([self.index_url] if self.index_url else []), *self.extra_index_urls]

    def merged(self, other: "PipIndexes") -> "PipIndexes":
        extras = tuple(dict.fromkeys((*self.extra_index_urls, *other.extra_index_urls)))
        return PipIndexes(other.index_url or self.index_url, extras)

    def env(self, prefix: str = "PIP") -> dict[str, str]:
        """The installer's environment variables for these indexes (credentials included: for
        the installer only); ``prefix``: ``PIP`` for pip, ``UV`` for uv."""
        env = {}
        if self.index_url:
            env[f"{prefix}_INDEX_URL"] = self.index_url
        if self.extra_index_urls:
            env[f"{prefix}_EXTRA_INDEX_URL"] = " ".join(self.extra_index_urls)
        return env

    def public_lines(self) -> list[str]:
        """Requirements-file lines for the indexes that carry no credentials."""
        lines = [f"--index-url {self.index_url}"] if self.index_url and not _has_credentials(self.index_url) else []
        return lines + [f"--extra-index-url {u}" for u in self.extra_index_urls if not _has_credentials(u)]

    def redacted(self) -> list[str]:
        """The index options as lines, credentials written ``***`` (for keys and messages)."""
        lines = [f"--index-url {redact(self.index_url)}"] if self.index_url else []
        return lines + [f"--extra-index-url {redact(u)}" for u in self.extra_index_urls]


@dataclass(frozen=True)
class Requirements:
    """Parsed requirements: ``lines`` (requirements and options, in order, index options
    included) and ``constraints`` (the lines of ``-c`` files)."""

    lines: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    #: The files read, each with the lines whose options reach pip through its environment only
    #: (index URLs): ``((path, (line, ...)), ...)``; what the content scan reads.
    files: tuple[tuple[str, tuple[int, ...]], ...] = field(default=(), compare=False)

    def __iter__(self):
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def names(self) -> set[str]:
        """The normalised names of the projects required."""
        return {n for n in map(requirement_name, self.lines) if n}

    def plus(self, extra: "Iterable[str] | Requirements") -> "Requirements":
        files = (*self.files, *(f for f in getattr(extra, "files", ()) if f not in self.files))
        return Requirements((*self.lines, *extra), self.constraints, files)


def _option(line: str) -> tuple[str, Optional[str]]:
    """('--index-url', 'URL') for '--index-url URL', '--index-url=URL' or '-iURL'."""
    head, _, rest = line.partition("=") if line.startswith("--") and "=" in line.split()[0] else (None, None, None)
    if head is not None:
        return head, rest.strip()
    parts = line.split(None, 1)
    opt = parts[0]
    if len(parts) == 2:
        return opt, parts[1].strip()
    if len(opt) > 2 and not opt.startswith("--"):  # -iURL, -rfile
        return opt[:2], opt[2:]
    return opt, None


def requirement_name(line: str) -> Optional[str]:
    """The normalised project name of a requirement line (None for options, URLs and paths)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    if line.startswith("-"):
        return None
    try:
        return canonicalize_name(Requirement(_strip_hashes(line)).name)
    except InvalidRequirement:
        return None


def _strip_hashes(line: str) -> str:
    return re.split(r"\s+--", line, maxsplit=1)[0].strip()


def _logical_lines(text: str) -> Iterable[tuple[int, int, str]]:
    """(first line, last line, logical line) of each line that is not empty or a comment."""
    buffer, start, number = "", 0, 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buffer:
            start = number
        stripped = re.sub(r"(^|\s)#.*$", "", raw)
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        line = (buffer + stripped).strip()
        buffer = ""
        if line:
            yield start, number, line
    if buffer.strip():
        yield start, number, buffer.strip()


def _check_requirement(line: str, where: str) -> None:
    from packaging.requirements import InvalidRequirement, Requirement

    if _has_credentials(line):
        raise ConfigurationError(
            f"The requirement at {where} has credentials in its URL ({redact(line)}). They would be written into the "
            "image. Publish the package on an index and pass the index as --index-url (credentials reach pip "
            "through its environment only), or install it from a wheel file in the context."
        )
    spec = _strip_hashes(line)
    for opt in re.findall(r"\s--(\S+?)(?:=|\s|$)", line):
        if opt not in ("hash", "config-settings", "global-option"):
            raise ConfigurationError(f"The requirement at {where} has the unknown option --{opt}: {redact(line)!r}.")
    if "://" in spec or spec.startswith((".", "/", "~")) or spec.endswith((".whl", ".tar.gz", ".zip")):
        return  # a URL or a path: pip's to judge
    try:
        Requirement(spec)
    except InvalidRequirement as exc:
        raise ConfigurationError(
            f"The requirement at {where} is not valid: {redact(line)!r} ({exc}). Write it as in a requirements file, "
            "e.g. 'numpy==1.26.4' or 'pandas>=2; python_version >= \"3.10\"'."
        ) from None


def _parse(text: str, origin: str, base: Path, seen: tuple[Path, ...], out: list[str], constraints: list[str],
           *, is_constraint: bool = False, files: Optional[list] = None, private: Optional[list] = None) -> None:
    for number, end, line in _logical_lines(text):
        where = f"{origin}:{number}"
        if line.startswith("-"):
            opt, value = _option(line)
            if opt in _INCLUDE_OPTIONS:
                if not value:
                    raise ConfigurationError(f"{where}: {opt} needs a file name, e.g. '{opt} other.txt'.")
                kind = _INCLUDE_OPTIONS[opt]
                path = Path(os.path.expanduser(value))
                path = path if path.is_absolute() else base / path
                _include(path, where, seen, out, constraints, is_constraint=is_constraint or kind == "constraint",
                         files=files)
                continue
            if opt in _INDEX_OPTIONS:
                if not value:
                    raise ConfigurationError(f"{where}: {opt} needs a URL.")
                if private is not None:
                    private.extend(range(number, end + 1))
                if not is_constraint:
                    out.append(f"{'--index-url' if _INDEX_OPTIONS[opt] == 'index_url' else '--extra-index-url'} {value}")
                continue
            if opt in _VALUE_OPTIONS or opt in _FLAG_OPTIONS:
                if opt in _VALUE_OPTIONS and not value:
                    raise ConfigurationError(f"{where}: {opt} needs a value.")
                if opt in _FLAG_OPTIONS and value:
                    raise ConfigurationError(f"{where}: {opt} takes no value, got {redact(value)!r}.")
                if opt in ("-e", "--editable"):
                    _check_requirement(value, where)
                if opt in ("-f", "--find-links") and "://" not in value and not os.path.isabs(value):
                    value = str((base / value).resolve())  # pip reads it relative to its file, too
                (constraints if is_constraint else out).append(line if not value else f"{opt} {value}")
                continue
            raise ConfigurationError(
                f"{where}: pip does not accept {opt} in a requirements file (line {redact(line)!r}). Known options: "
                + ", ".join(sorted({*_INDEX_OPTIONS, *_INCLUDE_OPTIONS, *_VALUE_OPTIONS, *_FLAG_OPTIONS})) + "."
            )
        _check_requirement(line, where)
        (constraints if is_constraint else out).append(line)


def _include(path: Path, where: str, seen: tuple[Path, ...], out: list[str], constraints: list[str], *,
             is_constraint: bool, files: Optional[list] = None) -> None:
    if not path.is_file():
        raise EntryPointNotFoundError(
            f"{where} includes {str(path)!r}, which does not exist. Paths in -r/-c lines are relative to the "
            "file that names them."
        )
    real = path.resolve()
    if real in seen:
        raise ConfigurationError(f"{where} includes {str(path)!r} again: the requirements files include each other.")
    private: list[int] = []
    _parse(read_requirements_text(path), str(path), path.parent, (*seen, real), out, constraints, is_constraint=is_constraint,
           files=files, private=private)
    if files is not None:
        files.append((str(path), tuple(private)))


_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def read_requirements_text(path: os.PathLike | str) -> str:
    """The text of a requirements file, decoded as pip decodes it: by its byte-order mark
    (PowerShell 5's ``pip freeze > requirements.txt`` writes UTF-16), else as UTF-8."""
    data = Path(path).read_bytes()
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            data, chosen = data[len(bom):], encoding
            break
    else:
        chosen = "utf-8"
    try:
        return data.decode(chosen)
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"The requirements file {str(path)!r} is not {chosen} text ({exc.reason} at byte {exc.start}). Save it "
            "as UTF-8 (or UTF-16 with a byte-order mark).") from None


def read_requirements_file(path: os.PathLike | str) -> Requirements:
    """Parse a requirements file (and the files it includes)."""
    p = Path(path)
    out: list[str] = []
    constraints: list[str] = []
    if not p.is_file():
        raise EntryPointNotFoundError(
            f"The requirements file {str(p)!r} does not exist. Check the path, or pass requirements=[...] as a list."
        )
    files: list = []
    _include(p, "requirements", (), out, constraints, is_constraint=False, files=files)
    return Requirements(tuple(out), tuple(constraints), tuple(files))


def parse_requirements(lines: Iterable[str], base_dir: os.PathLike | str) -> Requirements:
    """Parse requirement lines given as a list; ``-r``/``-c`` in them are relative to ``base_dir``."""
    out: list[str] = []
    constraints: list[str] = []
    files: list = []
    for i, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise ConfigurationError(f"requirements must be strings, got {type(line).__name__} ({line!r}).")
        _parse(line, f"requirements[{i - 1}]", Path(base_dir), (), out, constraints, files=files)
    return Requirements(tuple(out), tuple(constraints), tuple(files))


def split_index_options(lines: Iterable[str]) -> tuple[tuple[str, ...], PipIndexes]:
    """The lines without index options (duplicates dropped, order kept), and the indexes."""
    index_url: Optional[str] = None
    extras: list[str] = []
    kept: dict[str, None] = {}
    for raw in lines:
        if not isinstance(raw, str):
            raise ConfigurationError(f"requirements must be strings, got {type(raw).__name__}.")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        opt, value = _option(line) if line.startswith("-") else (None, None)
        if opt in _INDEX_OPTIONS:
            if not value:
                raise ConfigurationError(f"The requirements line {opt!r} needs a URL.")
            value = shlex.split(value)[0] if value[:1] in "\"'" else value
            if _INDEX_OPTIONS[opt] == "index_url":
                index_url = value
            else:
                extras.append(value)
            continue
        kept[line] = None
    return tuple(kept), PipIndexes(index_url, tuple(dict.fromkeys(extras)))
