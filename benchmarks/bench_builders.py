"""Compare, in one run, fairing's AppendBuilder (on the one-liner path and kept alive),
Kubeflow Fairing 1.0.2's AppendBuilder, ``crane append``, ``docker build`` + ``docker push``
and the floor, on the same base image, contexts and local registry.

Not a test (pytest does not collect it). Run as root on a machine with Debian's
docker-registry, mmdebstrap and docker.io; see benchmarks/README.md for crane and the
Kubeflow Fairing venv::

    python3 benchmarks/bench_builders.py [--json benchmarks/results.json] [--repeat 7]

Setup: a local registry (tests/services/registry.py) behind a byte-counting TCP proxy
(tests/services/proxy.py, in a child process); every tool talks to the proxy. The base
image is the test harness's Debian bookworm + python3 image, referenced by tag as users
do. Per tool and case: wall time, bytes sent (headers included) and request bodies, HTTP
requests (the registry's access log), and peak memory added (RSS high-water mark: of this
process for fairing, of the worker for Kubeflow Fairing, of the child processes for the
command-line tools; docker's daemon is not counted).

* fairing: what ``config.fn(train)()`` / ``TrainJob(...).submit()`` do: a new
  ``AppendBuilder`` per build (its state lives in the cache directory).
* fairing-kept: one ``AppendBuilder`` per repository kept across builds (own cache directory).
* kubeflow-fairing: Kubeflow Fairing 1.0.2's ``AppendBuilder`` with a ``BasePreProcessor`` of
  the same files, in a worker process that stays alive (its ~4 s import is not counted).
* crane: ``tar -czf layer.tgz app && crane append -b BASE -f layer.tgz -t TARGET``.
* docker: ``docker build`` (BuildKit) + ``docker push``.
* floor: sha256 of the tar, ISA-L deflate (level 1) and sha256 of the result, then one
  ``curl`` upload (``POST`` + ``PUT``) of the bytes that had to go up: the whole context on
  a first build, the changed file on a one-line change.

Cases: ``first`` (small context: main.py + 20 CSV files, new repository), ``one-line`` (one
line of main.py changed; median of ``--repeat`` runs, the tools interleaved per repeat),
``unchanged`` (the same context again, median of ``--repeat``), ``data-one-line`` (a project with a 50 MB data
directory: one line of main.py changed, after a first build that is not counted),
``large-first`` (5,000 files, 50 MB, new repository), ``weights-first`` (main.py and one
50 MB incompressible file, new repository).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fairing.builders.append import AppendBuilder  # noqa: E402
from fairing.context import BuildContext  # noqa: E402
from tests.services.base_image import push_base_image  # noqa: E402
from tests.services.dockerd import ensure_docker  # noqa: E402
from tests.services.proxy import Proxy  # noqa: E402
from tests.services.registry import start_registry  # noqa: E402

ENTRYPOINT = ["python3", "main.py"]
KF_PYTHON = Path("/tmp/kf-venv/bin/python")


def write_small(directory: Path, line: str) -> None:
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(f"import json\n{line}\nprint(json.dumps({{'ok': True}}))\n")
    for i in range(20):
        path = directory / "data" / f"part{i:02d}.csv"
        if not path.exists():
            path.write_text("".join(f"{i},{j},{j * i % 97}\n" for j in range(500)))


def write_main(directory: Path, line: str) -> None:
    (directory / "main.py").write_text(f"import json\n{line}\nprint(json.dumps({{'ok': True}}))\n")


def write_large(directory: Path, files: int = 5000, total: int = 50 * 1000 * 1000) -> None:
    rng = random.Random(1234)
    size = total // files
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 \n"
    (directory).mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text("print('large')\n")
    for i in range(files):
        sub = directory / "data" / f"d{i // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.txt").write_bytes(bytes(rng.choice(alphabet) for _ in range(size)) if i < 50 else
                                            os.urandom(size // 2).hex().encode()[:size])


def write_data_project(directory: Path) -> None:
    """main.py and data/: 50 files of 1 MB (half text, half hex: compressible like real data)."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    write_main(directory, "x = 0")
    for i in range(50):
        (directory / "data" / f"shard{i:02d}.csv").write_bytes(os.urandom(500_000).hex().encode())


def write_weights(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text("print('weights')\n")
    with open(directory / "weights.bin", "wb") as fh:
        for _ in range(50):
            fh.write(os.urandom(1_000_000))


def context_of(directory: Path) -> BuildContext:
    files = {str(p.relative_to(directory)): p for p in directory.rglob("*") if p.is_file() and p.name != "Dockerfile"}
    return BuildContext(files=files, entrypoint=ENTRYPOINT)


def _proxy_main(upstream: str, conn) -> None:
    proxy = Proxy(upstream)
    conn.send(proxy.address)
    while True:
        if conn.recv() == "stop":
            proxy.stop()
            conn.send(None)
            return
        time.sleep(0.05)  # let the pump threads account for the last bytes
        conn.send((proxy.bytes_up, proxy.body_bytes_up))


class ProxyProcess:
    """The counting proxy in a child process, so its threads do not compete with fairing
    (which runs in this process) for the GIL."""

    def __init__(self, upstream: str) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_proxy_main, args=(upstream, child), daemon=True)
        self._process.start()
        self.address = self._conn.recv()

    def counters(self) -> tuple[int, int]:
        self._conn.send("get")
        return self._conn.recv()

    def stop(self) -> None:
        if self._process.is_alive():
            self._conn.send("stop")
            self._conn.recv()
            self._process.join(5)


def _status_kb(pid: "int | str", field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak(pid: "int | str") -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


class Meter:
    """Time, requests, bytes and peak memory of one build. ``pid``: the process whose RSS
    high-water mark to watch (this one, or a worker); children's peaks come from ``run``."""

    def __init__(self, registry, proxy, pid: "int | str" = "self") -> None:
        self.registry, self.proxy, self.pid = registry, proxy, pid
        self.child_peak_kb = 0

    def __enter__(self):
        self.mark = self.registry.mark()
        self.up0, self.body0 = self.proxy.counters()
        _reset_peak(self.pid)
        self.rss0 = _status_kb(self.pid, "VmRSS")
        CHILD_PEAKS.clear()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        peak = _status_kb(self.pid, "VmHWM") - self.rss0
        self.peak_mb = round(max([peak, *CHILD_PEAKS]) / 1024, 1)
        self.requests = len(self.registry.requests(self.mark))
        up, body = self.proxy.counters()
        self.bytes_up = up - self.up0
        self.body_bytes = body - self.body0


CHILD_PEAKS: list[int] = []


def run(cmd, **kw):
    """Run a command under GNU time, whose report of the command's peak RSS (KiB) goes to
    CHILD_PEAKS. (A child forked from this process would inherit this process's RSS
    high-water mark in its ``ru_maxrss``; time's child is forked from the small ``time``.)"""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak.name, *map(str, cmd)], stdout=out, stderr=err,
                              **kw)
        text = peak.read().strip().splitlines()
        if text and text[-1].isdigit():
            CHILD_PEAKS.append(int(text[-1]))
        if proc.returncode != 0:
            out.seek(0)
            err.seek(0)
            raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out.read()[-2000:]!r}\n{err.read()[-2000:]!r}")
    return proc


class KubeflowFairing:
    """The Kubeflow Fairing 1.0.2 worker (benchmarks/kf_worker.py in its own venv)."""

    def __init__(self, python: Path) -> None:
        self.proc = subprocess.Popen([str(python), str(ROOT / "benchmarks" / "kf_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ready = self.proc.stdout.readline()
        if not ready:
            raise SystemExit(f"the Kubeflow Fairing worker did not start ({python}); see benchmarks/README.md")

    def build(self, directory: Path, registry: str, image: str, base: str) -> None:
        self.proc.stdin.write(json.dumps({"dir": str(directory), "registry": registry, "image": image,
                                          "base": base}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if not answer["ok"]:
            raise SystemExit(f"Kubeflow Fairing failed: {answer['error']}")

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def floor_upload(tar: bytes, registry: str, repo: str, session) -> None:
    """The floor: sha256 + ISA-L deflate + sha256, then POST + one curl PUT of the bytes."""
    from isal import isal_zlib

    hashlib.sha256(tar).hexdigest()
    c = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    gz = c.compress(tar) + c.flush()
    digest = "sha256:" + hashlib.sha256(gz).hexdigest()
    location = session.post(f"http://{registry}/v2/{repo}/blobs/uploads/").headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    with tempfile.NamedTemporaryFile(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as fh:
        fh.write(gz)
        fh.flush()
        sep = "&" if "?" in location else "?"
        run(["curl", "-sf", "-X", "PUT", "--data-binary", f"@{fh.name}", "-H", "Content-Type: application/octet-stream",
             f"{location}{sep}digest={digest}"])


def tar_of(directory: Path, only: "list[str] | None" = None) -> bytes:
    cmd = ["tar", "-C", str(directory.parent), "-cf", "-"]
    cmd += [f"{directory.name}/{name}" for name in only] if only else [directory.name]
    return subprocess.run(cmd, capture_output=True, check=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--repeat", type=int, default=7, help="one-line re-submits per tool (median reported)")
    parser.add_argument("--crane", default=shutil.which("crane") or "/tmp/gobin/crane")
    parser.add_argument("--kubeflow-python", default=str(KF_PYTHON),
                        help="python of a venv with kubeflow-fairing==1.0.2 (see README) [/tmp/kf-venv/bin/python]")
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--docker", default="/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker")
    parser.add_argument("--cases", default="first,one-line,unchanged,data-one-line,large-first,weights-first,"
                                           "requirements")
    parser.add_argument("--requirement", default="scikit-learn==1.5.2", help="for the requirements case")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    if not Path(args.crane).exists():
        raise SystemExit("crane not found: GOBIN=/tmp/gobin go install github.com/google/go-containerregistry/cmd/crane@v0.22.1")

    import requests

    registry = start_registry()
    proxy = ProxyProcess(registry.address)
    docker = None if args.skip_docker else ensure_docker()
    kf = KubeflowFairing(Path(args.kubeflow_python)) if Path(args.kubeflow_python).exists() else None
    session = requests.Session()
    work = Path(tempfile.mkdtemp(prefix="fairing-bench-"))
    results: list[dict] = []
    pushed_docker: list[str] = []
    base_ref, base_digest = "", None
    try:
        base = push_base_image(registry.address)
        base_digest = base.digest
        port = proxy.address.rsplit(":", 1)[1]
        base_ref = f"{proxy.address}/{base.repository}:3.11-bookworm"
        kf_base = f"localhost:{port}/{base.repository}:3.11-bookworm"  # containerregistry: plain HTTP for localhost only
        projects = {name: work / name / "app" for name in ("small", "data", "large", "weights")}
        write_small(projects["small"], "x = 1")
        write_data_project(projects["data"])
        write_large(projects["large"])
        write_weights(projects["weights"])

        def record(tool, case, m, **extra):
            row = {"tool": tool, "case": case, "seconds": round(m.seconds, 4), "bytes_up": m.bytes_up,
                   "body_bytes_up": m.body_bytes, "requests": m.requests, "peak_mb": m.peak_mb, **extra}
            results.append(row)
            print(f"{tool:16} {case:14} {m.seconds:8.3f} s {m.bytes_up:>11,d} B sent {m.body_bytes:>11,d} B bodies "
                  f"{m.requests:4d} req {m.peak_mb:7.1f} MB", flush=True)

        kept: dict = {}

        def fairing_build(project: Path, repo: str, version: int, changed):
            builder = AppendBuilder(base_ref, proxy.address, repository=repo, cache_dir=work / "cache-oneliner")
            try:
                builder.build(context_of(project))
            finally:
                builder.close()

        def fairing_kept_build(project: Path, repo: str, version: int, changed):
            if repo not in kept:
                kept[repo] = AppendBuilder(base_ref, proxy.address, repository=repo, cache_dir=work / "cache-kept")
            kept[repo].build(context_of(project))

        def kf_build(project: Path, repo: str, version: int, changed):
            kf.build(project, f"localhost:{port}/{repo.rsplit('/', 1)[0]}", repo.rsplit("/", 1)[1], kf_base)

        def crane_build(project: Path, repo: str, version: int, changed):
            layer = work / "layer.tgz"
            run(["tar", "-C", str(project.parent), "-czf", str(layer), project.name])
            run([args.crane, "append", "--insecure", "-b", base_ref, "-f", str(layer), "-t",
                 f"{proxy.address}/{repo}:v{version}"])
            layer.unlink()

        dockerfile = f'FROM {base_ref}\nWORKDIR /app\nCOPY . /app\nENTRYPOINT {json.dumps(ENTRYPOINT)}\n'
        docker_env = dict(os.environ, DOCKER_BUILDKIT="1")

        def docker_build(project: Path, repo: str, version: int, changed):
            target = f"{proxy.address}/{repo}:v{version}"
            (project / "Dockerfile").write_text(dockerfile)
            try:
                run([args.docker, "build", "-q", "-t", target, str(project)], env=docker_env)
                pushed_docker.append(target)
                run([args.docker, "push", "-q", target], env=docker_env)
            finally:
                (project / "Dockerfile").unlink()

        floor_tar: list = []

        def floor_build(project: Path, repo: str, version: int, changed):
            floor_upload(floor_tar[0], proxy.address, repo, session)

        tools = {"fairing": fairing_build, "fairing-kept": fairing_kept_build}
        if kf is not None:
            tools["kubeflow-fairing"] = kf_build
        tools["crane"] = crane_build
        if docker is not None:
            tools["docker"] = docker_build
            subprocess.run([args.docker, "image", "rm", "-f", base_ref], capture_output=True)
        tools["floor"] = floor_build

        def measure(tool, project, repo, version, changed=None):
            pid = kf.proc.pid if tool == "kubeflow-fairing" else "self"
            if tool == "floor":
                floor_tar[:] = [tar_of(project, changed)]  # not timed
            with Meter(registry, proxy, pid) as m:
                tools[tool](project, repo, version, changed)
            return m

        turn = [0]

        def rotated() -> list:
            """The tools, starting one further at each call: no tool always runs first."""
            names = list(tools)
            turn[0] += 1
            k = turn[0] % len(names)
            return names[k:] + names[:k]

        def once(case, project, repo_suffix="", skip=()):
            rows = {}
            for tool in rotated():
                if tool not in skip:
                    rows[tool] = measure(tool, project, f"bench/{tool}{repo_suffix}", 1)
            for tool in tools:
                if tool in rows:
                    record(tool, case, rows[tool])

        def repeated(case, project, write, repo_suffix="", version0=2, skip=()):
            runs: dict = {tool: [] for tool in tools if tool not in skip}
            for i in range(args.repeat):
                write(project, f"x = {version0 + i}")
                for tool in [t for t in rotated() if t in runs]:
                    runs[tool].append(measure(tool, project, f"bench/{tool}{repo_suffix}", version0 + i,
                                              changed=["main.py"]))
            for tool, ms in runs.items():
                m = sorted(ms, key=lambda m: m.seconds)[len(ms) // 2]
                record(tool, case, m, all_seconds=[round(x.seconds, 4) for x in ms])

        small = projects["small"]
        if "first" in cases:
            once("first", small)
        if "one-line" in cases:
            repeated("one-line", small, write_main)
        if "unchanged" in cases:
            repeated("unchanged", small, lambda project, line: None, version0=100, skip=("floor",))
        if "data-one-line" in cases:
            for tool in tools:  # the project's first build, not counted
                if tool != "floor":
                    measure(tool, projects["data"], f"bench/{tool}-data", 1)
            repeated("data-one-line", projects["data"], write_main, "-data")
        if "large-first" in cases:
            once("large-first", projects["large"], "-large")
        if "weights-first" in cases:
            once("weights-first", projects["weights"], "-weights")
        for builder in kept.values():
            builder.close()
    finally:
        if kf is not None:
            kf.stop()
        if docker is not None:
            # by name only: the image IDs may be shared with other users of the engine
            leftovers = pushed_docker + [base_ref]
            if base_digest:
                leftovers.append(f"{base_ref.rsplit(':', 1)[0]}@{base_digest}")
            for name in leftovers:
                subprocess.run([args.docker, "image", "rm", "-f", name], capture_output=True)
            docker.stop()
        proxy.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)

    if "requirements" in cases:
        results += requirements_case(args.requirement)
    summary = summarize(results)
    print()
    for k, v in summary.items():
        print(f"{k:55} {v}")
    Path(args.json).write_text(json.dumps({"results": results, "summary": summary, "python": sys.version.split()[0],
                                           "cpus": os.cpu_count()}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


def requirements_case(requirement: str) -> list[dict]:
    """fairing's requirements layer for ``requirement`` (Python 3.11, linux/amd64), installed
    with pip and with uv, twice each (interleaved), each time with empty caches (pip's,
    uv's and fairing's); the mean of the two is reported."""
    from fairing.images.layers import LocalCache
    from fairing.images.manifest import Platform
    from fairing.images.python_deps import build_requirements_layer

    runs: dict = {"pip": [], "uv": []}
    for installer in ("pip", "uv", "uv", "pip"):  # interleaved; the network's speed varies
        with tempfile.TemporaryDirectory(prefix="fairing-bench-req-") as tmp:
            env = {"PIP_CACHE_DIR": f"{tmp}/pip", "UV_CACHE_DIR": f"{tmp}/uv"}
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                t0 = time.perf_counter()
                layer = build_requirements_layer([requirement], python_version="3.11",
                                                 platform=Platform.parse("linux/amd64"),
                                                 cache=LocalCache(f"{tmp}/fairing"), installer=installer)
                seconds = time.perf_counter() - t0
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        runs[installer].append((seconds, layer))
        print(f"fairing-{installer:8} requirements   {seconds:8.3f} s  layer {layer.size:,d} B {layer.digest[:19]}",
              flush=True)
    rows = []
    for installer, got in runs.items():
        rows.append({"tool": f"fairing-{installer}", "case": "requirements",
                     "seconds": round(sum(t for t, _ in got) / len(got), 3), "all_seconds": [round(t, 3) for t, _ in got],
                     "layer_bytes": got[0][1].size, "digest": got[0][1].digest,
                     "same_digest_each_time": len({l.digest for _, l in got}) == 1})
    return rows


def summarize(results: list[dict]) -> dict:
    """Ratios of fairing (one-liner path) to each peer, per case, and the issue's targets."""
    by = {(r["tool"], r["case"]): r for r in results}
    summary: dict = {}
    for case in ("first", "one-line", "unchanged", "data-one-line", "large-first", "weights-first"):
        f = by.get(("fairing", case))
        if not f:
            continue
        for peer in ("fairing-kept", "kubeflow-fairing", "crane", "docker", "floor"):
            p = by.get((peer, case))
            if p and p["seconds"]:
                summary[f"{case}: fairing/{peer} time"] = round(f["seconds"] / p["seconds"], 2)
        summary[f"{case}: fairing requests"] = f["requests"]
        summary[f"{case}: fairing body bytes"] = f["body_bytes_up"]
        summary[f"{case}: fairing peak MB"] = f["peak_mb"]
    u, p = by.get(("fairing-uv", "requirements")), by.get(("fairing-pip", "requirements"))
    if u and p:
        summary["requirements (cold): uv/pip time"] = round(u["seconds"] / p["seconds"], 2)
        summary["requirements: same layer digest with uv and pip"] = u["digest"] == p["digest"]
    return summary


if __name__ == "__main__":
    sys.exit(main())
