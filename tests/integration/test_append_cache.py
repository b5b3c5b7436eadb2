"""The append builder's state across builders and processes, and data layers, against a real registry.

Every build here uses a new AppendBuilder, as the one-liner path (``config.fn(train)()``,
``TrainJob(...).submit()``) does; what makes re-submits fast is the cache directory.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest

from fairing.builders.append import AppendBuilder
from fairing.context import BuildContext
from fairing.errors import ConfigurationError
from fairing.images import layers as layers_module
from fairing.images.registry import RegistryClient

# on the worker of the tests that build on and remove from the Docker engine (test_docker_builder.py)
pytestmark = pytest.mark.xdist_group("docker-engine")

ROOT = Path(__file__).resolve().parents[2]


def _repo() -> str:
    return f"cache/{uuid.uuid4().hex[:10]}"


def _project(tmp_path: Path, line: str = "x = 1") -> Path:
    app = tmp_path / "app"
    (app / "data").mkdir(parents=True, exist_ok=True)
    (app / "main.py").write_text(f"{line}\nprint(x)\n")
    for i in range(4):
        path = app / "data" / f"part{i}.bin"
        if not path.exists():
            path.write_bytes(os.urandom(300_000))
    return app


def _context(app: Path) -> BuildContext:
    files = {str(p.relative_to(app)): p for p in sorted(app.rglob("*")) if p.is_file()}
    return BuildContext(files=files, entrypoint=["python3", "main.py"])


def _build(registry, base_image, cache, repo, app, **options):
    with AppendBuilder(base_image, registry.address, repository=repo, cache_dir=cache,
                       **{"data_threshold": 1 << 20, **options}) as builder:
        return builder.build(_context(app))


def _manifest(ref) -> dict:
    with RegistryClient(insecure=True) as client:
        return json.loads(client.get_manifest(ref)[0])


def _layer_files(ref, digest: str) -> dict:
    with RegistryClient(insecure=True) as client:
        blob = client.get_blob(ref, digest)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _uploaded(reqs) -> list[str]:
    return [unquote(r.path.split("digest=", 1)[1].split("&", 1)[0]) for r in reqs
            if r.method == "PUT" and "/blobs/uploads/" in r.path and "digest=" in r.path]


@pytest.fixture
def packed(monkeypatch):
    """The layers packed (read from disk) during a build, by their first entry's name."""
    seen: list[list[str]] = []
    real = layers_module._write_layer

    def spy(entries, out, level):
        seen.append([e.name for e in entries if e.kind == "file"])
        return real(entries, out, level)

    monkeypatch.setattr(layers_module, "_write_layer", spy)
    return seen


def test_one_line_change_with_a_data_directory_reads_and_sends_only_the_code(registry, base_image, tmp_path, packed):
    cache, repo = tmp_path / "cache", _repo()
    app = _project(tmp_path)
    first = _build(registry, base_image, cache, repo, app)
    manifest = _manifest(first)
    assert len(manifest["layers"]) == 3  # base, data, code
    data_layer, code_layer = manifest["layers"][1]["digest"], manifest["layers"][2]["digest"]
    assert sorted(_layer_files(first, data_layer)) == [f"app/data/part{i}.bin" for i in range(4)]
    assert sorted(_layer_files(first, code_layer)) == ["app/main.py"]

    packed.clear()
    _project(tmp_path, "x = 2")
    mark = registry.mark()
    second = _build(registry, base_image, cache, repo, app)  # a new builder, as the one-liner path makes
    reqs = registry.requests(mark)
    new = _manifest(second)
    assert new["layers"][1]["digest"] == data_layer and new["layers"][2]["digest"] != code_layer
    assert packed == [["app/main.py"]]  # the data files were not read
    assert sorted(_uploaded(reqs)) == sorted([new["layers"][2]["digest"], new["config"]["digest"]])
    assert len(reqs) <= 5, reqs

    packed.clear()
    mark = registry.mark()
    third = _build(registry, base_image, cache, repo, app)
    reqs = registry.requests(mark)
    assert third == second and packed == []
    assert [r.method for r in reqs] == ["HEAD"], reqs


def test_a_file_replaced_with_same_size_and_mtime_is_packed_again(registry, base_image, tmp_path):
    cache, repo = tmp_path / "cache", _repo()
    app = _project(tmp_path)
    first = _build(registry, base_image, cache, repo, app)
    target = app / "data" / "part1.bin"
    st = target.stat()
    # same size and mtime, new content in a new inode (an editor's save-by-rename)
    new_content = os.urandom(st.st_size)
    tmp = app / "data" / ".part1.tmp"
    tmp.write_bytes(new_content)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, target)
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    second = _build(registry, base_image, cache, repo, app)
    layer = _manifest(second)["layers"][1]["digest"]
    assert layer != _manifest(first)["layers"][1]["digest"]
    assert _layer_files(second, layer)["app/data/part1.bin"] == new_content

    # the same inode written in place, mtime put back: the ctime still tells
    st = target.stat()
    in_place = os.urandom(st.st_size)
    with open(target, "r+b") as fh:
        fh.write(in_place)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_ino == st.st_ino and target.stat().st_mtime_ns == st.st_mtime_ns
    third = _build(registry, base_image, cache, repo, app)
    layer = _manifest(third)["layers"][1]["digest"]
    assert _layer_files(third, layer)["app/data/part1.bin"] == in_place


def test_a_deleted_file_leaves_the_layer(registry, base_image, tmp_path):
    cache, repo = tmp_path / "cache", _repo()
    app = _project(tmp_path)
    _build(registry, base_image, cache, repo, app)
    (app / "data" / "part3.bin").unlink()
    ref = _build(registry, base_image, cache, repo, app, data_threshold=1 << 19)
    files = _layer_files(ref, _manifest(ref)["layers"][1]["digest"])
    assert sorted(files) == [f"app/data/part{i}.bin" for i in range(3)]


def test_a_blob_the_registry_lost_is_packed_and_uploaded_again(registry, base_image, tmp_path):
    cache, repo = tmp_path / "cache", _repo()
    app = _project(tmp_path)
    first = _build(registry, base_image, cache, repo, app)
    data_layer = _manifest(first)["layers"][1]
    # the registry deletes the data layer from the repository (as garbage collection would)
    with RegistryClient(insecure=True) as client:
        resp = client.request("DELETE", registry.address, f"/v2/{repo}/blobs/{data_layer['digest']}",
                              repository=repo, actions="*", ok=(202,))
        resp.close()
        assert not client.has_blob(first, data_layer["digest"])
    _project(tmp_path, "x = 3")
    mark = registry.mark()
    second = _build(registry, base_image, cache, repo, app)  # the cache believes the blob is there
    reqs = registry.requests(mark)
    assert [r for r in reqs if r.method == "PUT" and "/manifests/" in r.path][0].status == 400  # refused once
    assert data_layer["digest"] in _uploaded(reqs)
    assert _manifest(second)["layers"][1]["digest"] == data_layer["digest"]
    with RegistryClient(insecure=True) as client:
        assert client.has_blob(second, data_layer["digest"])
    assert len(_layer_files(second, data_layer["digest"])) == 4


def test_data_paths_get_their_own_layer_whatever_their_size(registry, base_image, tmp_path):
    app = tmp_path / "app"
    (app / "models").mkdir(parents=True)
    (app / "models" / "tiny.json").write_text("{}")
    (app / "main.py").write_text("print(1)\n")
    with AppendBuilder(base_image, registry.address, repository=_repo(), cache_dir=tmp_path / "c",
                       data_paths=["models"]) as builder:
        ref = builder.build(_context(app))
    manifest = _manifest(ref)
    assert len(manifest["layers"]) == 3
    assert list(_layer_files(ref, manifest["layers"][1]["digest"])) == ["app/models/tiny.json"]


@pytest.mark.parametrize("options, message", [
    ({"data_threshold": -1}, "data_threshold must be a number of bytes"),
    ({"data_paths": "data"}, "data_paths must be a list of context paths"),
    ({"data_paths": ["../up"]}, "leaves the working directory"),
    ({"base_max_age": -5}, "base_max_age must be a number of seconds"),
    ({"compresslevel": 12}, "compresslevel must be an integer from 0 to 9"),
    ({"data_treshold": 5}, "data_threshold"),
])
def test_bad_options_are_configuration_errors(options, message):
    with pytest.raises(ConfigurationError, match=message):
        AppendBuilder("python:3.11-slim", "localhost:5000", **options)


_CONCURRENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from fairing.builders.append import AppendBuilder
    from fairing.context import BuildContext
    app = Path({app!r})
    files = {{str(p.relative_to(app)): p for p in sorted(app.rglob("*")) if p.is_file()}}
    with AppendBuilder({base!r}, {registry!r}, repository={repo!r}, cache_dir={cache!r},
                       data_threshold=1 << 20) as b:
        for i in range(3):
            print(b.build(BuildContext(files=files, entrypoint=["python3", "main.py"])).digest, flush=True)
""")


def test_two_processes_share_the_cache_at_once(registry, base_image, tmp_path):
    cache = tmp_path / "cache"
    app = _project(tmp_path)
    for i in range(20):
        (app / "data" / f"small{i}.txt").write_text(f"{i}\n" * 1000)
    procs = []
    for repo in (_repo(), _repo(), None):
        repo = repo or procs[0][1]  # two of them push to the same repository
        script = _CONCURRENT.format(root=str(ROOT), app=str(app), base=str(base_image), registry=registry.address,
                                    repo=repo, cache=str(cache))
        procs.append((subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True), repo))
    outs = []
    for proc, _repo_name in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        outs.append(out.split())
    assert all(len(o) == 3 and len(set(o)) == 1 for o in outs), outs
    assert outs[0] == outs[2]  # same repository, same image
    # the shared state is consistent: a new builder in this process finds everything
    mark = registry.mark()
    ref = _build(registry, base_image, cache, procs[0][1], app)
    assert ref.digest == outs[0][0]
    assert [r.method for r in registry.requests(mark)] == ["HEAD"]


def test_an_image_with_data_layers_runs_with_all_its_files(registry, base_image, docker_engine, tmp_path):
    """Data layers (a directory, a large top-level file, a data_paths entry) and the code
    layer unpack into one working directory."""
    app = tmp_path / "app"
    (app / "data" / "sub").mkdir(parents=True)
    (app / "data" / "sub" / "rows.csv").write_text("a\nb\nc\n" * 1000)
    (app / "model.bin").write_bytes(os.urandom(5000))
    (app / "conf").mkdir()
    (app / "conf" / "c.json").write_text('{"k": 1}')
    (app / "main.py").write_text(
        "import json, os\n"
        "print('rows', len(open('data/sub/rows.csv').read().split()), 'model', os.path.getsize('model.bin'),\n"
        "      'conf', json.load(open('conf/c.json'))['k'])\n")
    with AppendBuilder(base_image, registry.address, repository=_repo(), cache_dir=tmp_path / "c",
                       data_threshold=4000, data_paths=["conf"]) as builder:
        ref = builder.build(_context(app))
    assert len(_manifest(ref)["layers"]) == 5  # base, conf, data, model.bin, code
    try:
        proc = docker_engine.run("run", "--rm", "--network", "none", str(ref), timeout=300)
    finally:
        docker_engine.run("image", "rm", "-f", str(ref), check=False)
    assert "rows 3000 model 5000 conf 1" in proc.stdout
