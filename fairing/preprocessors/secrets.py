"""Keeping credentials out of build contexts: file names that are credentials, and a content scan.

:data:`CREDENTIAL_FILES` are gitignore-style patterns of files that hold credentials,
gathered from GitHub's gitignore templates (Node/Python ``.env*``, Terraform
``*.tfvars``/``*.tfstate``, Java keystores, Google's ``credentials.json``), the
path rules of gitleaks (``.pypirc``, ``.npmrc``, ``.pgpass``, ``.s3cfg``...) and the
files detect-secrets and cloud CLIs are known to write (``.boto``,
``application_default_credentials.json``, ``kaggle.json``, ``.vault-token``). They
are checked apart from the user's ignore rules, so a negation (``!.env``) cannot
re-include one; only naming the file in ``input_files`` packages it.

:func:`scan` reads a file's bytes for private keys and tokens with a fixed, well-known
shape (the formats gitleaks and detect-secrets detect by prefix: AWS access keys,
GitHub, GitLab, Slack, Stripe, Google API, Hugging Face, npm, PyPI, OpenAI and
Anthropic keys, and URLs with a password). It is written here rather than taken from
detect-secrets because it must read any file as bytes (a key renamed ``model.bin``),
with no high-entropy heuristics (which flag every hash in a lock file), and without a
dependency for a few regular expressions. A line holding ``pragma: allowlist secret``
(detect-secrets' marker) is not reported. At most :data:`SCAN_LIMIT` bytes of each
file are read, and a file unchanged since it was last scanned (same inode, size and
modification time) is not read again in the same process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["CREDENTIAL_FILES", "SCAN_LIMIT", "Finding", "scan", "credential_spec"]

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

#: Bytes of a file :func:`scan` reads.
SCAN_LIMIT = 64 << 20

# Every expression starts with a literal, so that the regular-expression engine skips to
# candidates with a fast substring search (about 30 MB/s for them all on 2 cores); whether a
# token starts a word is checked after a match, which a leading \b would prevent.
_PATTERNS = {
    "a private key": [rb"-----BEGIN (?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"],
    "an AWS access key": [p + rb"[A-Z2-7]{16}\b" for p in (rb"AKIA", rb"ASIA", rb"ABIA", rb"ACCA", rb"A3T[A-Z0-9]")],
    "a GitHub token": [p + rb"_[A-Za-z0-9]{36}\b" for p in (rb"ghp", rb"gho", rb"ghu", rb"ghs", rb"ghr")]
    + [rb"github_pat_[A-Za-z0-9_]{82}\b"],
    "a GitLab token": [rb"glpat-[A-Za-z0-9_-]{20}\b"],
    "a Slack token": [b"xox" + c + rb"-[A-Za-z0-9-]{10,}" for c in (b"b", b"a", b"p", b"r", b"s")],
    "a Slack webhook": [rb"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"],
    "a Stripe key": [rb"sk_live_[A-Za-z0-9]{24,}", rb"rk_live_[A-Za-z0-9]{24,}"],
    "a Google API key": [rb"AIza[0-9A-Za-z_-]{35}\b"],
    "a Hugging Face token": [rb"hf_[A-Za-z]{34}\b"],
    "an npm token": [rb"npm_[A-Za-z0-9]{36}\b"],
    "a PyPI token": [rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"],
    "an OpenAI key": [rb"sk-proj-[A-Za-z0-9_-]{40,}", rb"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"],
    "an Anthropic key": [rb"sk-ant-[a-z0-9]+-[A-Za-z0-9_-]{80,}"],
    "a password in a URL": [rb"://[^:/\s@\"']{1,64}:[^@/\s\"']{3,128}@[A-Za-z0-9.-]+"],
}
_COMPILED = [(kind, [re.compile(rx) for rx in rxs]) for kind, rxs in _PATTERNS.items()]
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ALLOW = b"pragma: allowlist secret"
_CACHE: dict[tuple, list] = {}  # (path, inode, size, mtime) -> findings: a re-submit does not read again


@dataclass(frozen=True)
class Finding:
    """What looks like a secret, and on which line (never the secret itself)."""

    kind: str
    line: int

    def __str__(self) -> str:
        return f"{self.kind} (line {self.line})"


def scan(path: Path) -> list[Finding]:
    """The secrets found in the first :data:`SCAN_LIMIT` bytes of ``path``."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        with open(path, "rb") as fh:
            _CACHE[key] = _scan_bytes(fh.read(SCAN_LIMIT))
    return list(_CACHE[key])


def _scan_bytes(data: bytes) -> list[Finding]:
    found = []
    for kind, expressions in _COMPILED:
        match = next((m for rx in expressions for m in rx.finditer(data) if _reportable(data, m, kind)), None)
        if match is not None:  # one finding of a kind per file is enough to refuse it
            found.append(Finding(kind, data.count(b"\n", 0, match.start()) + 1))
    return sorted(found, key=lambda f: f.line)


def _reportable(data: bytes, match: re.Match, kind: str) -> bool:
    start = data.rfind(b"\n", 0, match.start()) + 1
    end = data.find(b"\n", match.end())
    if _ALLOW in data[start:end if end >= 0 else len(data)]:
        return False
    # a token starts a word (not the tail of a longer identifier); a URL's scheme precedes '://'
    return kind in ("a private key", "a password in a URL", "a Slack webhook") or \
        match.start() == 0 or data[match.start() - 1] not in _WORD


@lru_cache(maxsize=1)
def credential_spec():
    """A pathspec matching :data:`CREDENTIAL_FILES`."""
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(CREDENTIAL_FILES)
