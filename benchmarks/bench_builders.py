"""Compare fairing's AppendBuilder with `docker build` + `docker push` (BuildKit) and
`crane append`, on the same base image and the same contexts, in one run.

Not a test (pytest does not collect it). Run as root on a machine with Debian's
docker-registry, mmdebstrap and docker.io, and crane built from the Go module proxy::

    GOFLAGS=-mod=mod go install github.com/google/go-containerregistry/cmd/crane@latest
    python3 benchmarks/bench_builders.py [--json benchmarks/results.json] [--repeat 3]

Setup: a local registry (tests/services/registry.py) behind a byte-counting TCP proxy
(tests/services/proxy.py); every tool talks to the proxy. The base image is the test
harness's Debian bookworm + python3 image (tests/services/base_image.py), referenced by
tag as users do. Per tool and case it reports wall time, bytes uploaded (client to
registry, headers included) and HTTP requests (from the registry's access log).

* fairing: ``AppendBuilder.build(context)`` measured in-process, one builder kept across
  the cases as a notebook session would (sets entrypoint, workdir and env too).
* crane: what a user runs: ``tar -czf layer.tgz app`` then ``crane append -b BASE -f
  layer.tgz -t TARGET`` (a new layer only; crane sets no entrypoint here).
* docker: ``docker build -t TARGET ctx`` (BuildKit, ``FROM base`` / ``COPY . /app`` /
  ``WORKDIR`` / ``ENTRYPOINT``) then ``docker push TARGET``.
* fairing-docker: ``DockerBuilder.build(context)`` in-process: the engine's build API
  (the legacy builder, as the Docker SDK drives it) with fairing's generated Dockerfile,
  then its push API; the result pinned by digest. One builder kept across the cases.
  It runs right after docker, whose first build has already pulled the base.

Cases: ``first`` (small context, new repository), ``one-line`` (one line of main.py
changed), ``unchanged`` (the same context again), ``large-first`` (5,000 files, 50 MB,
new repository).
"""

from __future__ import annotations

import argparse
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
from fairing.images import ImageRef  # noqa: E402
from tests.services.base_image import push_base_image  # noqa: E402
from fairing.builders.docker import DockerBuilder  # noqa: E402
from tests.services.dockerd import ensure_docker  # noqa: E402
from tests.services.proxy import Proxy  # noqa: E402
from tests.services.registry import start_registry  # noqa: E402

ENTRYPOINT = ["python3", "main.py"]


def write_small(directory: Path, line: str) -> None:
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(f"import json\n{line}\nprint(json.dumps({{'ok': True}}))\n")
    for i in range(20):
        (directory / "data" / f"part{i:02d}.csv").write_text("".join(f"{i},{j},{j * i % 97}\n" for j in range(500)))


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


class Meter:
    def __init__(self, registry, proxy) -> None:
        self.registry, self.proxy = registry, proxy

    def __enter__(self):
        self.mark = self.registry.mark()
        self.up0, self.body0 = self.proxy.counters()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.requests = len(self.registry.requests(self.mark))
        up, body = self.proxy.counters()
        self.bytes_up = up - self.up0
        self.body_bytes = body - self.body0


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--repeat", type=int, default=9, help="one-line re-submits per tool (median reported)")
    parser.add_argument("--crane", default=shutil.which("crane") or str(Path.home() / "go" / "bin" / "crane"))
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--docker", default="/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker",
                        help="docker CLI for build/push (Debian's docker.io CLI has BuildKit built in) [/usr/bin/docker]")
    args = parser.parse_args()
    if not Path(args.crane).exists():
        raise SystemExit("crane not found: GOFLAGS=-mod=mod go install github.com/google/go-containerregistry/cmd/crane@latest")

    registry = start_registry()
    proxy = ProxyProcess(registry.address)
    docker = None if args.skip_docker else ensure_docker()
    work = Path(tempfile.mkdtemp(prefix="fairing-bench-"))
    results: list[dict] = []
    pushed_docker: list[str] = []
    base_ref, base_digest = "", None
    try:
        base = push_base_image(registry.address)
        base_digest = base.digest
        base_ref = f"{proxy.address}/{base.repository}:3.11-bookworm"
        small = work / "small" / "app"
        large = work / "large" / "app"
        write_small(small, "x = 1")
        write_large(large)

        def record(tool, case, m, **extra):
            row = {"tool": tool, "case": case, "seconds": round(m.seconds, 4), "bytes_up": m.bytes_up,
                   "body_bytes_up": m.body_bytes, "requests": m.requests, **extra}
            results.append(row)
            print(f"{tool:14} {case:12} {m.seconds:8.3f} s {m.bytes_up:>11,d} B sent {m.body_bytes:>11,d} B bodies "
                  f"{m.requests:5d} req", flush=True)

        # The tools, each with its own target repository. Every case runs the tools one after
        # the other, and the one-line case interleaves them per repeat, so a change in the
        # machine's load hits all tools alike.
        cache = work / "fairing-cache"
        state: dict = {"builder": None, "ref": None}

        def fairing_build(ctx_dir: Path, repo: str, version: int):
            if state["builder"] is None or repo.endswith("-large"):
                builder = AppendBuilder(base_ref, proxy.address, repository=repo, cache_dir=cache)
                if not repo.endswith("-large"):
                    state["builder"] = builder
            else:
                builder = state["builder"]
            state["ref"] = builder.build(context_of(ctx_dir))
            state.setdefault("refs", []).append(state["ref"])

        def crane_build(ctx_dir: Path, repo: str, version: int):
            layer = work / "layer.tgz"
            run(["tar", "-C", str(ctx_dir.parent), "-czf", str(layer), ctx_dir.name])
            run([args.crane, "append", "--insecure", "-b", base_ref, "-f", str(layer), "-t",
                 f"{proxy.address}/{repo}:v{version}"])
            layer.unlink()

        dockerfile = f'FROM {base_ref}\nWORKDIR /app\nCOPY . /app\nENTRYPOINT {json.dumps(ENTRYPOINT)}\n'
        docker_env = dict(os.environ, DOCKER_BUILDKIT="1")

        def docker_build(ctx_dir: Path, repo: str, version: int):
            target = f"{proxy.address}/{repo}:v{version}"
            (ctx_dir / "Dockerfile").write_text(dockerfile)
            try:
                run([args.docker, "build", "-q", "-t", target, str(ctx_dir)], env=docker_env)
                pushed_docker.append(target)
                run([args.docker, "push", "-q", target], env=docker_env)
            finally:
                (ctx_dir / "Dockerfile").unlink()

        docker_builders: dict = {}

        def fairing_docker_build(ctx_dir: Path, repo: str, version: int):
            builder = docker_builders.get(repo)
            if builder is None:
                builder = docker_builders[repo] = DockerBuilder(base_ref, proxy.address, repository=repo)
            ref = builder.build(context_of(ctx_dir))
            pushed_docker.append(f"{ref.name}:{ref.tag}")

        tools = {"fairing": fairing_build, "crane": crane_build}
        if docker is not None:
            tools["docker"] = docker_build
            tools["fairing-docker"] = fairing_docker_build
            # docker pulls the base in its first build (so it knows it can mount the base layer)
            subprocess.run([args.docker, "image", "rm", "-f", base_ref], capture_output=True)

        write_small(small, "x = 1")
        for tool, build in tools.items():
            with Meter(registry, proxy) as m:
                build(small, f"bench/{tool}", 1)
            record(tool, "first", m)
        one_line: dict = {tool: [] for tool in tools}
        for i in range(args.repeat):
            write_small(small, f"x = {i + 2}")
            for tool, build in tools.items():
                with Meter(registry, proxy) as m:
                    build(small, f"bench/{tool}", i + 2)
                one_line[tool].append(m)
        one_line_refs = state.get("refs", [])[-args.repeat:]
        for tool in tools:
            median = sorted(range(args.repeat), key=lambda i: one_line[tool][i].seconds)[args.repeat // 2]
            m = one_line[tool][median]
            extra = {"all_seconds": [round(t.seconds, 4) for t in one_line[tool]]}
            if tool == "fairing":
                manifest_bytes = _manifest_bytes(one_line_refs[median])
                manifest = json.loads(manifest_bytes)
                extra["changed_layer_bytes"] = manifest["layers"][-1]["size"]
                extra["layer_config_manifest_bytes"] = (manifest["layers"][-1]["size"] + manifest["config"]["size"]
                                                        + len(manifest_bytes))
            record(tool, "one-line", m, **extra)
        for tool, build in tools.items():
            with Meter(registry, proxy) as m:
                build(small, f"bench/{tool}", args.repeat + 2)
            record(tool, "unchanged", m)
        for tool, build in tools.items():
            with Meter(registry, proxy) as m:
                build(large, f"bench/{tool}-large", 1)
            record(tool, "large-first", m)
        if state["builder"] is not None:
            state["builder"].close()
    finally:
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

    by = {(r["tool"], r["case"]): r for r in results}
    summary = {}
    for case in ("first", "one-line", "unchanged", "large-first"):
        f, c = by.get(("fairing", case)), by.get(("crane", case))
        if f and c:
            summary[f"{case}: fairing/crane time"] = round(f["seconds"] / c["seconds"], 2)
    fo = by[("fairing", "one-line")]
    co = by.get(("crane", "one-line"))
    if co:
        pairs = sorted(f / c for f, c in zip(fo["all_seconds"], co["all_seconds"]))
        summary["one-line: median of per-repeat fairing/crane"] = round(pairs[len(pairs) // 2], 2)
    summary["one-line: fairing body bytes sent"] = fo["body_bytes_up"]
    summary["one-line: changed layer + config + manifest"] = fo["layer_config_manifest_bytes"]
    summary["one-line: fairing bytes sent incl. HTTP headers"] = fo["bytes_up"]
    summary["unchanged: fairing requests"] = by[("fairing", "unchanged")]["requests"]
    for tool in ("crane", "docker"):
        r = by.get((tool, "one-line"))
        if r:
            summary[f"one-line: fairing/{tool} time"] = round(fo["seconds"] / r["seconds"], 2)
    for case in ("first", "one-line", "unchanged", "large-first"):
        d, k = by.get(("fairing-docker", case)), by.get(("docker", case))
        if d and k:
            summary[f"{case}: fairing-docker/docker time"] = round(d["seconds"] / k["seconds"], 2)
    print()
    for k, v in summary.items():
        print(f"{k:40} {v}")
    Path(args.json).write_text(json.dumps({"results": results, "summary": summary, "python": sys.version.split()[0],
                                           "cpus": os.cpu_count()}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0




def _manifest_bytes(ref: ImageRef) -> bytes:
    from fairing.images.registry import RegistryClient

    with RegistryClient(insecure=True) as client:
        return client.get_manifest(ref)[0]


if __name__ == "__main__":
    sys.exit(main())
