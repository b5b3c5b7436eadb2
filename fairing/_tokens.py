"""The shapes of tokens and credentials, at the bottom (it imports nothing of fairing's):
the table the secret scan (:mod:`fairing.preprocessors.secrets`) matches files against, and
:func:`redact_tokens`, with which :class:`fairing.FairingError` masks a token quoted in a
message. Apart from the scan so that the error tree can use it without importing a stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import base64
import binascii
import re


_ESCAPE_BEFORE = re.compile(rb"\\(?:[ntrfbv0]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})\Z")


def _word_start(data: bytes, start: int, match: re.Match) -> bool:
    """The match starts a word: no letter or digit before it, unless that letter ends an
    escape sequence ("line\\nghp_..." in a JSON or Python string, a notebook's metadata)."""
    return start == 0 or data[start - 1] not in _WORD or _ESCAPE_BEFORE.search(data, max(0, start - 10), start) is not None


def _always(data: bytes, start: int, match: re.Match) -> bool:
    return True


def _base64_private_key(data: bytes, start: int, match: re.Match) -> bool:
    text = match.group(0)
    text = text[: len(text) // 4 * 4][:400]
    try:
        return b"PRIVATE KEY" in base64.b64decode(text)
    except (binascii.Error, ValueError):
        return False


_KUBECONFIG = rb"(?:kind[\"']?\s*:\s*[\"']?Config\b)"
_K8S_SECRET = rb"(?:kind[\"']?\s*:\s*[\"']?Secret\b)"


def _secret_data_key(data: bytes, start: int, match: re.Match) -> bool:
    """The match (from "ata") is a Secret's ``data`` or ``stringData`` key, not ``metadata``."""
    before = data[max(0, start - 7):start]
    return before.endswith(b"stringD") or (before.endswith(b"d") and (len(before) < 2 or before[-2] not in _WORD))
_DOCKER_AUTHS = rb"\"auths\"\s*:\s*\{"

# (kind, expression, check, marker): every expression starts with a literal, so that the
# regular-expression engine skips to candidates with a fast substring search; ``check``
# sees the match in its buffer (a token starts a word: checked after a match, which a
# leading \b would prevent); ``marker``, when set, must occur somewhere in the same file
# (a kubeconfig's ``kind: Config``, a Docker config's ``"auths"``).
_RULES: list[tuple[str, bytes, Callable, Optional[bytes]]] = [
    ("a private key", rb"-----BEGIN (?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
     _always, None),
    ("a private key (base64)", rb"LS0tLS1CRUdJTi[A-Za-z0-9+/]{40,}", _base64_private_key, None),
    ("an AWS access key", rb"A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z2-7]{16}\b", _word_start, None),
    # an AWS secret key has no shape of its own: by the names AWS's tools and SDKs give it
    ("an AWS secret key", rb"secret_access_key[\"'\]]*\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
     _always, None),
    ("an AWS secret key", rb"SECRET_ACCESS_KEY[\"'\]]*\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
     _always, None),
    ("an AWS secret key", rb"ecretAccessKey[\"'\]]*\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
     _always, None),
    ("a GitHub token", rb"gh[pousr]_[A-Za-z0-9]{36}\b", _word_start, None),
    ("a GitHub token", rb"github_pat_[A-Za-z0-9_]{82}\b", _word_start, None),
    ("a GitLab token", rb"glpat-[A-Za-z0-9_-]{20}\b", _word_start, None),
    ("a Slack token", rb"xox[baprs]-[A-Za-z0-9-]{10,}", _word_start, None),
    ("a Slack webhook", rb"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+", _always, None),
    ("a Stripe key", rb"sk_live_[A-Za-z0-9]{24,}", _word_start, None),  # two rules: a literal start is fast
    ("a Stripe key", rb"rk_live_[A-Za-z0-9]{24,}", _word_start, None),
    ("a Google API key", rb"AIza[0-9A-Za-z_-]{35}\b", _word_start, None),
    ("a Google OAuth token", rb"ya29\.[0-9A-Za-z_-]{20,}", _word_start, None),
    ("a Google OAuth token", rb"1//0[0-9A-Za-z_-]{30,}", _word_start, None),
    ("an OAuth client secret", rb"GOCSPX-[A-Za-z0-9_-]{28}", _word_start, None),
    ("an OAuth client secret", rb"client_secret[\"']\s*:\s*[\"'][^\"'\s]{8,}", _always, None),
    ("an OAuth refresh token", rb"refresh_token[\"']\s*:\s*[\"'][^\"'\s]{8,}", _always, None),
    ("a Google service account key", rb"\"type\"\s*:\s*\"service_account\"", _always, None),
    ("Google user credentials", rb"\"type\"\s*:\s*\"authorized_user\"", _always, None),
    ("a Hugging Face token", rb"hf_[A-Za-z]{34}\b", _word_start, None),
    ("an npm token", rb"npm_[A-Za-z0-9]{36}\b", _word_start, None),
    ("a PyPI token", rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", _word_start, None),
    ("an OpenAI key", rb"sk-proj-[A-Za-z0-9_-]{40,}", _word_start, None),
    ("an OpenAI key", rb"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}", _word_start, None),
    ("an Anthropic key", rb"sk-ant-[a-z0-9]+-[A-Za-z0-9_-]{80,}", _word_start, None),
    ("a JSON Web Token", rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", _word_start, None),
    ("a password in a URL", rb"://[^:/\s@\"']{1,64}:[^@/\s\"']{3,128}@[A-Za-z0-9.-]+", _always, None),
    # by the file's shape
    ("a kubeconfig user credential", rb"token[\"']?\s*:\s*[\"']?[A-Za-z0-9._~+/=:-]{8,}", _always, _KUBECONFIG),
    ("a kubeconfig user credential", rb"password[\"']?\s*:\s*[\"']?[^\s\"'{}$]{3,}", _always, _KUBECONFIG),
    ("a Kubernetes Secret's data",
     rb"ata[\"']?\s*:\s*\{?\s*[\"']?[A-Za-z0-9_.-]+[\"']?\s*:\s*[\"']?[^\s\"'{}|>]{4,}", _secret_data_key,
     _K8S_SECRET),
    # whatever the base64 holds (a key with "Bag Attributes" before it is not aligned for the rule above)
    ("a kubeconfig user credential", rb"client-key-data[\"']?\s*:\s*[\"']?[A-Za-z0-9+/=]{16,}", _always,
     _KUBECONFIG),
    ("a Docker registry credential", rb"\"auth\"\s*:\s*\"[A-Za-z0-9+/=]{4,}\"", _always, _DOCKER_AUTHS),
    ("a Docker registry credential", rb"\"(?:identitytoken|registrytoken)\"\s*:\s*\"[^\"\s]{4,}\"", _always,
     _DOCKER_AUTHS),
]
_COMPILED = [(kind, re.compile(rx), check, marker) for kind, rx, check, marker in _RULES]
_MARKERS = {marker: re.compile(marker) for _, _, _, marker in _RULES if marker}
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ALLOW = re.compile(rb"pragma: allowlist secret")


def redact_tokens(text: str) -> str:
    """``text`` with every token of a known shape (the rules that need no file shape) masked:
    its first characters kept, the rest ``***`` (for messages that quote a line back)."""
    data = text.encode("utf-8", "surrogatepass")
    spans: list[tuple[int, int]] = []
    for _kind, rx, check, marker in _COMPILED:
        if marker is not None or rx.pattern.startswith(b"-----BEGIN"):
            continue
        for m in rx.finditer(data):
            if b"***" not in m.group(0) and check(data, m.start(), m):  # not one masked already
                spans.append(m.span())
    if not spans:
        return text
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:
            start = pos
        if start >= end:
            continue
        keep = min(4, (end - start) // 4)
        out += [data[pos:start + keep], b"***"]
        pos = end
    out.append(data[pos:])
    return b"".join(out).decode("utf-8", "surrogatepass")
