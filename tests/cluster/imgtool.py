#!/usr/bin/env python3
"""Tiny image tool for the test cluster: turns tar layers into a Docker v2
image and pushes it to a registry over the plain-HTTP registry API.

  imgtool.py push REF --layer A.tar [--layer B.tar ...] [--entrypoint JSON]
             [--cmd JSON] [--env K=V ...] [--workdir DIR] [--base REF]
  imgtool.py exists REF

REF is HOST:PORT/name:tag. With --base the layers are appended to the base
image's layers and config. Standard library only.
"""
import argparse
import gzip
import hashlib
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def split_ref(ref):
    host, _, rest = ref.partition("/")
    name, _, tag = rest.rpartition(":")
    if not name:
        name, tag = rest, "latest"
    return host, name, tag


def req(method, url, data=None, headers=None, ok=(200, 201, 202)):
    r = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(r, timeout=300) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        if e.code in ok:
            return e.code, dict(e.headers), body
        raise SystemExit(f"{method} {url}: HTTP {e.code}: {body[:500]!r}")


def blob_exists(host, name, digest):
    try:
        req("HEAD", f"http://{host}/v2/{name}/blobs/{digest}", ok=(200,))
        return True
    except SystemExit:
        return False


def push_blob(host, name, path_or_bytes, digest):
    if blob_exists(host, name, digest):
        return
    _, h, _ = req("POST", f"http://{host}/v2/{name}/blobs/uploads/", data=b"")
    loc = h.get("Location") or h.get("location")
    if loc.startswith("/"):
        loc = f"http://{host}{loc}"
    sep = "&" if "?" in loc else "?"
    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    req("PUT", f"{loc}{sep}digest={digest}", data=data,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})


def get_manifest(ref):
    host, name, tag = split_ref(ref)
    _, _, body = req("GET", f"http://{host}/v2/{name}/manifests/{tag}",
                     headers={"Accept": MT_MANIFEST}, ok=(200,))
    man = json.loads(body)
    _, _, cfg = req("GET", f"http://{host}/v2/{name}/blobs/{man['config']['digest']}", ok=(200,))
    return host, name, man, json.loads(cfg)


def gzip_layer(tar_path, tmpdir):
    """Returns (gz_path, gz_digest, gz_size, diff_id)."""
    raw = hashlib.sha256()
    gz_path = f"{tmpdir}/{hashlib.sha256(tar_path.encode()).hexdigest()}.gz"
    with open(tar_path, "rb") as src, open(gz_path, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                raw.update(chunk)
                gz.write(chunk)
    h = hashlib.sha256()
    size = 0
    with open(gz_path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
    return gz_path, "sha256:" + h.hexdigest(), size, "sha256:" + raw.hexdigest()


def cmd_push(a):
    host, name, tag = split_ref(a.ref)
    layers, diff_ids = [], []
    config = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}
    if a.base:
        bhost, bname, bman, bcfg = get_manifest(a.base)
        config = bcfg
        config.pop("history", None)
        for l in bman["layers"]:
            if not blob_exists(host, name, l["digest"]):
                # cross-repository mount; falls back to copy when refused
                st, h, _ = req("POST", f"http://{host}/v2/{name}/blobs/uploads/?mount={l['digest']}&from={bname}", data=b"")
                if st != 201:
                    _, _, data = req("GET", f"http://{bhost}/v2/{bname}/blobs/{l['digest']}", ok=(200,))
                    push_blob(host, name, data, l["digest"])
            layers.append(l)
        diff_ids = list(config["rootfs"]["diff_ids"])
    tmp = tempfile.mkdtemp()
    try:
        for tar_path in a.layer or []:
            gz, digest, size, diff_id = gzip_layer(tar_path, tmp)
            push_blob(host, name, gz, digest)
            layers.append({"mediaType": MT_LAYER, "digest": digest, "size": size})
            diff_ids.append(diff_id)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c = config.setdefault("config", {}) or {}
    config["config"] = c
    if a.entrypoint is not None:
        c["Entrypoint"] = json.loads(a.entrypoint)
    if a.cmd is not None:
        c["Cmd"] = json.loads(a.cmd)
    if a.workdir:
        c["WorkingDir"] = a.workdir
    if a.user:
        c["User"] = a.user
    if a.env:
        env = [e for e in c.get("Env") or [] if e.split("=", 1)[0] not in {x.split("=", 1)[0] for x in a.env}]
        c["Env"] = env + a.env
    elif "Env" not in c:
        c["Env"] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    cfg_bytes = json.dumps(config, sort_keys=True).encode()
    cfg_digest = "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    push_blob(host, name, cfg_bytes, cfg_digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": layers,
    }
    body = json.dumps(manifest).encode()
    req("PUT", f"http://{host}/v2/{name}/manifests/{tag}", data=body, headers={"Content-Type": MT_MANIFEST})
    print(f"{a.ref}@sha256:{hashlib.sha256(body).hexdigest()}")


def cmd_exists(a):
    host, name, tag = split_ref(a.ref)
    try:
        req("HEAD", f"http://{host}/v2/{name}/manifests/{tag}", headers={"Accept": MT_MANIFEST}, ok=(200,))
    except SystemExit:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    pp = sub.add_parser("push")
    pp.add_argument("ref")
    pp.add_argument("--layer", action="append")
    pp.add_argument("--base")
    pp.add_argument("--entrypoint")
    pp.add_argument("--cmd")
    pp.add_argument("--env", action="append")
    pp.add_argument("--workdir")
    pp.add_argument("--user")
    pe = sub.add_parser("exists")
    pe.add_argument("ref")
    a = p.parse_args()
    {"push": cmd_push, "exists": cmd_exists}[a.action](a)


if __name__ == "__main__":
    main()
