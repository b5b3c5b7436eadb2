"""The result channel: how a job's return value or exception travels back.

The job writes one *envelope* (a dict) as a single ASCII line::

    fairing-result:v1:<base64 of zlib-compressed pickle>

to the file named by ``FAIRING_RESULT_FILE`` (the local backend's temp file, a Docker
bind mount, or a pod's termination-message path), and, when ``FAIRING_RESULT_LOG=1``,
also as the last line of stdout so that results larger than the file's limit can be
read from the logs. Envelope keys: ``ok``, ``value`` or ``exc``, ``exc_type``,
``message``, ``traceback``, ``python``, ``cloudpickle``, ``error`` (a runtime problem
such as a version mismatch, distinct from the user's own exception).

Standard library only: this module runs inside the job too.
"""

import base64
import pickle
import zlib

PREFIX = "fairing-result:v1:"


def _dumps(obj) -> bytes:
    try:
        import cloudpickle  # by-value classes and lambdas in results
    except ImportError:
        return pickle.dumps(obj, protocol=4)
    return cloudpickle.dumps(obj, protocol=4)


def encode(envelope: dict) -> str:
    return PREFIX + base64.b64encode(zlib.compress(_dumps(envelope), 6)).decode("ascii")


def decode(text: str) -> dict:
    """The envelope from a line written by :func:`encode` (surrounding text ignored)."""
    start = text.rfind(PREFIX)
    if start < 0:
        raise ValueError("no fairing result in the text")
    payload = text[start + len(PREFIX):].split()[0]
    return pickle.loads(zlib.decompress(base64.b64decode(payload)))
