"""Output files, in the job: collected after the payload ran and sent to the submitter.

What is collected: every file under ``FAIRING_OUTPUTS`` (a directory the runtime creates
and names in the environment before the payload runs), and the paths listed in
``FAIRING_OUTPUT_PATHS`` (a JSON list, relative to the working directory; a directory
stands for the files under it). Each keeps its path relative to where it was found.

Where they go is ``FAIRING_OUTPUTS_TARGET``:

* a directory (the local backend): the files are copied there;
* ``oci://host/repository:tag`` (a cluster): they are pushed as one OCI artifact (tagged
  ``<tag>-<pod name>``, so that the replicas and indexes of one job never collide), ORAS's
  way (artifact type :data:`ARTIFACT_TYPE`, an empty config, one layer per file titled
  with its path by ``org.opencontainers.image.title``), so ``oras pull`` reads it too.
  ``FAIRING_OUTPUTS_INSECURE=1`` speaks plain HTTP; credentials come from the Docker
  config file named by ``FAIRING_OUTPUTS_AUTH_FILE`` (a mounted Secret, never an env
  value): basic auth, or the bearer token a registry's challenge asks for.

A result envelope too large for the termination message travels as one more layer
(media type :data:`RESULT_TYPE`); see :mod:`.result`.

The files also travel as one image layer (:func:`modelcar_layer`: an uncompressed,
reproducible tar holding them under ``models/``, annotated :data:`MODELCAR_ANNOTATION`,
without a title so ORAS and :func:`pull` leave it alone): a KServe modelcar image is then
only a manifest and a config that the submitter writes around this layer and a base
image's, so the model never passes through the submitter (see
:mod:`fairing.images.modelcar`). It costs the job a second upload of its files; raw file
blobs cannot be image layers, and a tar of them cannot be ORAS's files. The tar is streamed
twice (once for its digest, once to the registry), so it takes no disk. Uncompressed, so its
digest is its diff_id: the submitter writes the image config without reading it. Outputs
whose names a layer cannot hold (a ``.wh.`` part is a whiteout) get no such layer.

Standard library only (this runs in any image, with no fairing installed), hence a small
registry client of its own over ``urllib`` rather than the submitter's
:mod:`fairing.images.registry`, which needs ``requests``. ``python3 -m
fairing_runtime.outputs pull REF DIR`` downloads an artifact (an endpoint's init
container uses it to fetch its model).

It is past 450 lines because collecting, checking, the small registry client and the modelcar
layer are one step of a job (sending its outputs) with one error type; the registry client is
the part to move to a module of its own if it grows.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

ARTIFACT_TYPE = "application/vnd.fairing.outputs.v1"
RESULT_TYPE = "application/vnd.fairing.result.v1"
FILE_TYPE = "application/octet-stream"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
MODELCAR_TYPE = "application/vnd.oci.image.layer.v1.tar"
MODELCAR_ANNOTATION = "dev.fairing.modelcar"
MODELCAR_DIR = "models"
RESULT_TITLE = ".fairing-result"
_EMPTY = b"{}"


class OutputsError(Exception):
    """The outputs could not be sent or fetched (the message says why, without credentials)."""


def collect(cwd=".", environ=os.environ, required=True):
    """``{relative path: absolute path}`` of the files to send. ``required``: a listed output
    that is missing is an error (after a failure it is not: the exception is what matters,
    and the files written before it still come back)."""
    found = {}

    def add(more):  # two different files under one name: neither may silently win
        for rel, path in more.items():
            if rel in found and os.path.realpath(found[rel]) != os.path.realpath(path):
                raise OutputsError(f"two outputs are named {rel!r} ({found[rel]} and {path}); rename one of them")
            found[rel] = path

    root = environ.get("FAIRING_OUTPUTS")
    if root and os.path.isdir(root):
        add(_walk(root, ""))
    for listed in json.loads(environ.get("FAIRING_OUTPUT_PATHS") or "[]"):
        path = os.path.join(cwd, listed)
        rel = os.path.normpath(listed).lstrip("/")
        if os.path.isdir(path):
            add(_walk(path, rel))
        elif os.path.isfile(path):
            add({rel: os.path.abspath(path)})
        elif required:
            raise OutputsError(f"the output {listed!r} was not written by the job (looked for {os.path.abspath(path)})")
    found = dict(sorted(found.items()))
    secret_files, secret_dir = _credentials(environ), os.path.realpath("/var/run/secrets") + os.sep
    for rel, path in found.items():
        real = os.path.realpath(path)
        if real in secret_files or real.startswith(secret_dir):
            raise OutputsError(f"refusing the output {rel!r}: it is {real}, a credential mounted in the pod (the "
                               "registry's, the result key, a service account token); remove that link or path "
                               "from the outputs")
    for rel in found:  # FAIRING_OUTPUTS' file "m" and a listed "m/x": no directory can hold both
        parent = os.path.dirname(rel)
        while parent:
            if parent in found:
                raise OutputsError(f"the outputs {parent!r} and {rel!r} collide: {parent!r} is a file and the "
                                   "directory of another output; rename one of them")
            parent = os.path.dirname(parent)
    return found


def _credentials(environ):
    """Real paths of the credentials fairing mounts in a job's pod: never outputs (a link to one
    in FAIRING_OUTPUTS would push it to the registry, in the modelcar layer too), nor is anything
    under /var/run/secrets (service account tokens)."""
    return {os.path.realpath(environ[k]) for k in ("FAIRING_OUTPUTS_AUTH_FILE", "FAIRING_RESULT_KEY_FILE")
            if environ.get(k)}


def _walk(root, prefix):
    """The regular files under ``root`` (a link to one counts, and so does a link to a
    directory: its files come back); anything else found there (a pipe, a socket, a dangling
    link, a link back to a directory above it) is named on stderr and left out, so it costs no result."""
    out = {}
    chains = {root: (os.path.realpath(root),)}  # each directory's real path and its ancestors'
    for base, dirs, files in os.walk(root, followlinks=True):
        chain = chains.pop(base, (os.path.realpath(base),))
        for name in list(dirs):
            full = os.path.join(base, name)
            real = os.path.realpath(full)
            if real in chain:  # a loop: walking it would never end
                sys.stderr.write(f"fairing runtime: the output {os.path.relpath(full, root)!r} links to a "
                                 "directory above it; it is not sent\n")
                dirs.remove(name)
            else:
                chains[full] = chain + (real,)
        for name in files:
            full = os.path.join(base, name)
            rel = os.path.relpath(full, root)
            if not os.path.isfile(full):
                sys.stderr.write(f"fairing runtime: the output {rel!r} is not a regular file; it is not sent\n")
                continue
            out[os.path.join(prefix, rel) if prefix else rel] = os.path.abspath(full)
    return out


def _safe(rel):
    """``rel`` normalised, refused when it leaves the directory it is relative to: judged by
    path part, so ``..hidden`` and ``a..b`` are names like any other and ``..`` is not."""
    norm = os.path.normpath(rel)
    if os.path.isabs(norm) or "\0" in norm or norm in ("", ".") or ".." in norm.split(os.sep):
        raise OutputsError(f"refusing the output path {rel!r}: it leaves the outputs directory")
    return norm


# -- a small OCI distribution client --------------------------------------------------------

def parse_ref(text):
    """``(host, repository, tag_or_digest)`` of ``[oci://]host/repo[:tag|@digest]``."""
    text = text[len("oci://"):] if text.startswith("oci://") else text
    host, _, rest = text.partition("/")
    if "@" in rest:
        repo, _, ref = rest.partition("@")
    else:
        repo, _, ref = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    return host, repo, ref


class Registry:
    """Blobs and manifests of one registry, with basic or bearer auth from a Docker config."""

    def __init__(self, host, *, insecure=False, auth_file=None):
        self.host = host
        self.base = ("http" if insecure else "https") + "://" + host
        self._basic = _basic_auth(host, auth_file)
        self._token = None

    def _open(self, method, path, data=None, headers=None, *, ok=(200, 201, 202)):
        url = path if path.startswith("http") else self.base + path
        for attempt in range(2):
            request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
            if self._token:
                request.add_header("Authorization", "Bearer " + self._token)
            elif self._basic:
                request.add_header("Authorization", "Basic " + self._basic)
            try:
                resp = urllib.request.urlopen(request, timeout=300)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0 and self._authorize(exc.headers.get("WWW-Authenticate", "")):
                    continue
                if exc.code in ok:
                    return exc
                body = exc.read(2000).decode("utf-8", "replace")
                raise OutputsError(f"{method} {urllib.parse.urlsplit(url).path} on {self.host}: "
                                   f"HTTP {exc.code} {body.strip()}") from None
            except (urllib.error.URLError, OSError) as exc:
                raise OutputsError(f"cannot reach the registry {self.host}: {exc}") from None
            return resp
        raise OutputsError(f"the registry {self.host} refused the credentials")

    def _authorize(self, challenge):
        if not challenge.lower().startswith("bearer "):
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urllib.parse.urlencode({k: params[k] for k in ("service", "scope") if k in params})
        request = urllib.request.Request(params["realm"] + ("?" + query if query else ""))
        if self._basic:
            request.add_header("Authorization", "Basic " + self._basic)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                answer = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise OutputsError(f"cannot get a token for {self.host}: {exc}") from None
        self._token = answer.get("token") or answer.get("access_token")
        return bool(self._token)

    def _upload_location(self, repo, digest):
        """Where to PUT blob ``digest`` of ``repo`` (a monolithic upload), or None when the
        registry has it already."""
        try:
            self._open("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200,)).close()
            return None
        except OutputsError:
            pass
        resp = self._open("POST", f"/v2/{repo}/blobs/uploads/", data=b"")
        location = urllib.parse.urljoin(self.base + "/", resp.headers["Location"])
        resp.close()
        return location + ("&" if "?" in location else "?") + "digest=" + urllib.parse.quote(digest)

    def push_blob(self, repo, path=None, data=None):
        """Upload a file (or bytes); its descriptor fields ``(digest, size)``."""
        if data is None:
            digest, size = _file_digest(path)
        else:
            digest, size = "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
        location = self._upload_location(repo, digest)
        if location is None:
            return digest, size
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if data is None:
            with open(path, "rb") as fh:
                self._open("PUT", location, data=fh, headers=headers).close()
        else:
            self._open("PUT", location, data=data, headers=headers).close()
        return digest, size

    def push_stream(self, repo, produce):
        """Upload the bytes the iterators ``produce()`` yields (called twice: the digest first, then
        the upload, so nothing is kept in memory or on disk); ``(digest, size)``."""
        h, size = hashlib.sha256(), 0
        for chunk in produce():
            h.update(chunk)
            size += len(chunk)
        digest = "sha256:" + h.hexdigest()
        location = self._upload_location(repo, digest)
        if location is None:
            return digest, size
        self._open("PUT", location, data=_Replay(produce, digest),
                   headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}).close()
        return digest, size

    def put_manifest(self, repo, ref, manifest):
        data = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        self._open("PUT", f"/v2/{repo}/manifests/{ref}", data=data,
                   headers={"Content-Type": MANIFEST_TYPE}).close()
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def get_manifest(self, repo, ref):
        with self._open("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPE}) as resp:
            return json.loads(resp.read())

    def get_blob(self, repo, digest, dest=None):
        with self._open("GET", f"/v2/{repo}/blobs/{digest}") as resp:
            if dest is None:
                return resp.read()
            with open(dest, "wb") as fh:
                shutil.copyfileobj(resp, fh, 1 << 20)
        return None


class _Replay:
    """A request body that starts over each time it is sent (a retry after a 401 sends it whole),
    checked against ``digest`` before its last chunk goes: bytes that changed since the digest was
    taken (an output rewritten meanwhile) never complete an upload, whether or not the registry
    would have checked."""

    def __init__(self, produce, digest):
        self.produce, self.digest = produce, digest

    def __iter__(self):
        h, held = hashlib.sha256(), None
        for chunk in self.produce():
            if held is not None:
                yield held
            h.update(chunk)
            held = chunk
        if "sha256:" + h.hexdigest() != self.digest:
            raise OutputsError("the outputs changed while they were sent (an output was rewritten after the job's "
                               "code returned); write them all before it returns")
        if held is not None:
            yield held


def _basic_auth(host, auth_file):
    if not auth_file or not os.path.exists(auth_file):
        return None
    with open(auth_file) as fh:
        auths = (json.load(fh) or {}).get("auths") or {}
    for key, entry in auths.items():
        if re.sub(r"^https?://", "", key).split("/")[0] == host:
            if entry.get("auth"):
                return entry["auth"]
            if entry.get("username"):
                return base64.b64encode(f"{entry['username']}:{entry.get('password', '')}".encode()).decode()
    return None


def _file_digest(path):
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def registry_from_env(target, environ=os.environ):
    host, repo, ref = parse_ref(target)
    if environ.get("HOSTNAME") and not ref.startswith("sha256:"):  # one tag per pod (map indexes, replicas)
        ref = f"{ref}-{environ['HOSTNAME']}"[:128]
    return Registry(host, insecure=environ.get("FAIRING_OUTPUTS_INSECURE") == "1",
                    auth_file=environ.get("FAIRING_OUTPUTS_AUTH_FILE")), repo, ref


def _tar_info(name, size=0, directory=False):
    info = tarfile.TarInfo(name + ("/" if directory else ""))
    info.type, info.mode = (tarfile.DIRTYPE, 0o755) if directory else (tarfile.REGTYPE, 0o644)
    info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0, 0, 0, "", ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def modelcar_layer(files):
    """A function returning a fresh iterator over the bytes of the tar holding ``files``
    (``{relative path: absolute path}``) under ``models/``: directories 0755, files 0644 (KServe
    runs the modelcar as another user), owner 0, mtime 0, sorted; None when a name cannot be in a
    layer. A file that changes size between the two passes is an :class:`OutputsError`."""
    entries = {}
    for rel, path in files.items():
        parts = _safe(rel).split(os.sep)
        if any(part.startswith(".wh.") for part in parts):
            return None
        for depth in range(1, len(parts)):
            entries["/".join([MODELCAR_DIR, *parts[:depth]])] = None
        entries["/".join([MODELCAR_DIR, *parts])] = path
    sizes = {name: os.path.getsize(path) for name, path in entries.items() if path is not None}

    def produce():
        yield _tar_info(MODELCAR_DIR, directory=True)
        for name, path in sorted(entries.items()):
            if path is None:
                yield _tar_info(name, directory=True)
                continue
            size = sizes[name]
            yield _tar_info(name, size)
            left = size
            with open(path, "rb") as fh:
                while left:
                    chunk = fh.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
                    yield chunk
            if left:
                raise OutputsError(f"the output {name[len(MODELCAR_DIR) + 1:]!r} changed while it was sent")
            if size % tarfile.BLOCKSIZE:
                yield tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
        yield tarfile.NUL * (2 * tarfile.BLOCKSIZE)

    return produce


def push(target, files, result_line=None, environ=os.environ):
    """Push ``files`` (and a result line) as one artifact to ``oci://...``; its pinned reference."""
    registry, repo, tag = registry_from_env(target, environ)
    layers = []
    for rel, path in files.items():
        digest, size = registry.push_blob(repo, path=path)
        layers.append({"mediaType": FILE_TYPE, "digest": digest, "size": size,
                       "annotations": {TITLE: _safe(rel)}})
    produce = modelcar_layer(files) if files else None
    if produce is not None:
        digest, size = registry.push_stream(repo, produce)
        layers.append({"mediaType": MODELCAR_TYPE, "digest": digest, "size": size,
                       "annotations": {MODELCAR_ANNOTATION: MODELCAR_DIR}})
    elif files:
        sys.stderr.write("fairing runtime: an output's name has a part starting with '.wh.' (a whiteout in an "
                         "image layer); these outputs cannot be served as a KServe modelcar\n")
    if result_line is not None:
        digest, size = registry.push_blob(repo, data=result_line.encode("ascii"))
        layers.append({"mediaType": RESULT_TYPE, "digest": digest, "size": size,
                       "annotations": {TITLE: RESULT_TITLE}})
    config_digest, config_size = registry.push_blob(repo, data=_EMPTY)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": EMPTY_TYPE, "digest": config_digest, "size": config_size, "data": "e30="},
                "layers": layers or [{"mediaType": EMPTY_TYPE, "digest": config_digest, "size": config_size,
                                      "data": "e30="}]}
    digest = registry.put_manifest(repo, tag, manifest)
    return f"{registry.host}/{repo}@{digest}"


def copy_to(target, files):
    """Copy ``files`` under the directory ``target``."""
    for rel, path in files.items():
        dest = os.path.join(target, _safe(rel))
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(path, dest)
        except OSError as exc:
            raise OutputsError(f"could not copy the output {rel!r}: {exc}") from None


def send(result_line, *, limit, environ=os.environ, cwd=".", required=True):
    """Send the outputs; returns ``(where, files, large)``: the artifact reference or directory
    (None when there is nothing to send), the paths sent, and whether ``result_line`` went
    with them (it does on a registry when it is longer than ``limit``; when that push
    fails and there are no files, the line stays with the caller, for the log)."""
    target = environ.get("FAIRING_OUTPUTS_TARGET")
    if not target:
        return None, [], False
    files = collect(cwd, environ, required)
    if not target.startswith("oci://"):
        copy_to(target, files)
        return (target if files else None), list(files), False
    large = len(result_line) > limit
    if not files and not large:
        return None, [], False
    try:
        return push(target, files, result_line if large else None, environ), list(files), large
    except OutputsError as exc:
        if files:
            raise
        # only a large result: it still has the log (up to the kubelet's limit)
        sys.stderr.write(f"fairing runtime: could not push the result to {target} ({exc}); it goes to the log\n")
        return None, [], False


def pull(ref, dest, environ=os.environ):
    """Download the files of artifact ``ref`` into ``dest``; their relative paths."""
    registry, repo, digest = registry_from_env(ref, environ)
    manifest = registry.get_manifest(repo, digest)
    got = []
    for layer in manifest.get("layers", []):
        title = (layer.get("annotations") or {}).get(TITLE)
        if not title or layer.get("mediaType") == RESULT_TYPE:
            continue
        path = os.path.join(dest, _safe(title))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        registry.get_blob(repo, layer["digest"], path)
        got.append(title)
    return got


def main(argv):
    if len(argv) != 3 or argv[0] != "pull":
        sys.stderr.write("usage: python3 -m fairing_runtime.outputs pull REF DIR\n")
        return 2
    try:
        files = pull(argv[1], argv[2])
    except OutputsError as exc:
        sys.stderr.write(f"fairing: cannot fetch the model {argv[1]}: {exc}\n")
        return 1
    sys.stdout.write(f"fairing: fetched {len(files)} file(s) from {argv[1]}: {', '.join(files)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
