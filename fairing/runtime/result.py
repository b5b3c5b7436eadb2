"""The result channel: how a job's return value or exception travels back.

The job writes one *envelope* (a dict) as a single ASCII line::

    fairing-result:v1:<base64 of zlib-compressed pickle>:<hex HMAC-SHA256>

to the file named by ``FAIRING_RESULT_FILE`` (the local backend's temp file, a Docker
container's file, or a pod's termination-message path), and, when ``FAIRING_RESULT_LOG=1``,
also as the last line of stdout so that results larger than the file's limit can be
read from the logs. Envelope keys: ``ok``, ``value`` or ``exc_pickle`` (the exception,
pickled on its own), ``exc_type``,
``message``, ``traceback``, ``python``, ``cloudpickle``, ``error`` (a runtime problem
such as a version mismatch, distinct from the user's own exception), ``outputs`` (where
the job's output files went: an artifact reference or a directory, see ``outputs.py``).
An envelope whose line is longer than :data:`MESSAGE_LIMIT` travels with the outputs
artifact when there is one: the line written then is ``{"large": True, "outputs": ref}``,
and the artifact's result layer holds the full line, signed the same way.

A map's payload is a function payload whose kwargs are ``{MAP_CALLS: [(args, kwargs), ...]}``:
the job's ``JOB_COMPLETION_INDEX`` picks its call. A Katib trial's payload names its
search space (``TRIAL_CALL``, see :mod:`fairing.runtime.trial`).

The line is authenticated: the HMAC is keyed with a per-job key that only the
submitter and the job know (``FAIRING_RESULT_KEY`` in hex, or the file named by
``FAIRING_RESULT_KEY_FILE``, on a cluster a mounted Secret). :func:`decode` checks it
*before* unpickling anything, so a line printed by the job's code or its output (a
log, a data file echoed) is never unpickled in the submitter.

Standard library only: this module runs inside the job too.
"""

import base64
import hashlib
import hmac
import os
import pickle
import re
import secrets
import zlib

PREFIX = "fairing-result:v1:"
KEY_ENV = "FAIRING_RESULT_KEY"
KEY_FILE_ENV = "FAIRING_RESULT_KEY_FILE"
MAP_CALLS = "_fairing_map_calls"
#: A Katib trial's payload: kwargs ``{TRIAL_CALL: {"space": {name: spec}, "metric": name}}``;
#: the trial's parameter values come as strings in ``FAIRING_TRIAL_<i>`` (``i``: the
#: parameter's position in the space), filled in by Katib (see fairing.runtime.trial).
TRIAL_CALL = "_fairing_trial"
#: Longest line for the termination message (4096 bytes), with room to spare.
MESSAGE_LIMIT = 3584
_LINE = re.compile(re.escape(PREFIX) + r"([A-Za-z0-9+/=]*)(?::([0-9a-f]{64}))?")


class UnsignedResult(ValueError):
    """The text holds result lines, but none signed with this job's key."""


class Unloadable(Exception):
    """A signed result that cannot be unpickled here (its cause says why: most often a class
    importable only in the job). ``module`` is the missing module, when that is why."""

    def __init__(self, message: str, module=None) -> None:
        super().__init__(message)
        self.module = module


class MissingKey(ValueError):
    """No key to sign or check a result with: an empty key authenticates nothing."""


def new_key() -> bytes:
    """A fresh per-job key."""
    return secrets.token_bytes(32)


def key_from_env(environ=os.environ) -> bytes:
    """The job's key from its environment; removes ``FAIRING_RESULT_KEY`` so that the
    user's code and its subprocesses do not inherit it."""
    path = environ.get(KEY_FILE_ENV)
    if path and os.path.exists(path):  # absent for an endpoint: it reports no result
        with open(path, "rb") as fh:
            return bytes.fromhex(fh.read().decode("ascii").strip())
    value = environ.pop(KEY_ENV, "")
    return bytes.fromhex(value) if value else b""


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, (PREFIX + body).encode("ascii"), hashlib.sha256).hexdigest()


def _dumps(obj) -> bytes:
    try:
        import cloudpickle  # by-value classes and lambdas in results
    except ImportError:
        return pickle.dumps(obj, protocol=4)
    return cloudpickle.dumps(obj, protocol=4)


def encode(envelope: dict, key: bytes) -> str:
    if not key:
        raise MissingKey("no result key: a result signed with an empty key could be forged by anyone")
    body = base64.b64encode(zlib.compress(_dumps(envelope), 6)).decode("ascii")
    return f"{PREFIX}{body}:{_mac(key, body)}"


def decode(text: str, key: bytes) -> dict:
    """The envelope of the last line in ``text`` that :func:`encode` signed with ``key``.

    Raises ValueError when there is none (:class:`UnsignedResult` when there are result
    lines but none carries a valid signature: they are ignored, never unpickled), and
    :class:`MissingKey` when ``key`` is empty (anyone can sign with an empty key);
    :class:`Unloadable` (not a ValueError) when a signed envelope cannot be unpickled here.
    """
    if not key:
        raise MissingKey("no result key to check the job's result with; it is never read unauthenticated")
    found = False
    for match in reversed(list(_LINE.finditer(text))):
        found = True
        body, mac = match.group(1), match.group(2)
        if mac and hmac.compare_digest(mac, _mac(key, body)):
            data = zlib.decompress(base64.b64decode(body))
            try:
                return pickle.loads(data)
            except Exception as exc:  # signed, so the job's own: a class this side cannot import
                module = exc.name if isinstance(exc, ImportError) else None
                raise Unloadable(f"{type(exc).__name__}: {exc}", module) from exc
    if found:
        raise UnsignedResult("the job's output has result lines, but none signed with this job's key")
    raise ValueError("no fairing result in the text")
