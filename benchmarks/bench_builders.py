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
* fairing-docker: ``DockerBuilder.build(context)`` in-process (the engine's build API with
  the generated Dockerfile, then its push API; the result pinned by digest), one builder
  kept across the cases.

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fairing.builders.append import AppendBuilder  # noqa: E402
from fairing.builders.docker import DockerBuilder  # noqa: E402
from fairing.context import BuildContext  # noqa: E402
from fairing.images import ImageRef  # noqa: E402
from tests.services.base_image import push_base_image  # noqa: E402
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


class Meter:
    def __init__(self, registry, proxy) -> None:
        self.registry, self.proxy = registry, proxy

    def __enter__(self):
        self.mark = self.registry.mark()
        self.up0 = self.proxy.bytes_up
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.requests = len(self.registry.requests(self.mark))
        self.bytes_up = self.proxy.bytes_up - self.up0


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--repeat", type=int, default=3, help="one-line re-submits per tool (median reported)")
    parser.add_argument("--crane", default=shutil.which("crane") or str(Path.home() / "go" / "bin" / "crane"))
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--docker", default="/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker",
                        help="docker CLI for build/push (Debian's docker.io CLI has BuildKit built in) [/usr/bin/docker]")
    args = parser.parse_args()
    if not Path(args.crane).exists():
        raise SystemExit("crane not found: GOFLAGS=-mod=mod go install github.com/google/go-containerregistry/cmd/crane@latest")

    registry = start_registry()
    proxy = Proxy(registry.address)
    docker = None if args.skip_docker else ensure_docker()
    work = Path(tempfile.mkdtemp(prefix="fairing-bench-"))
    results: list[dict] = []
    pushed_docker: list[str] = []
    try:
        base = push_base_image(registry.address)
        base_ref = f"{proxy.address}/{base.repository}:3.11-bookworm"
        small = work / "small" / "app"
        large = work / "large" / "app"
        write_small(small, "x = 1")
        write_large(large)

        def record(tool, case, m, **extra):
            row = {"tool": tool, "case": case, "seconds": round(m.seconds, 4), "bytes_up": m.bytes_up,
                   "requests": m.requests, **extra}
            results.append(row)
            print(f"{tool:14} {case:12} {m.seconds:8.3f} s {m.bytes_up:>11,d} B {m.requests:5d} req", flush=True)

        # ---------------------------------------------------------------- fairing
        cache = work / "fairing-cache"
        with Meter(registry, proxy) as m:
            builder = AppendBuilder(base_ref, proxy.address, repository="bench/fairing", cache_dir=cache)
            builder.build(context_of(small))
        record("fairing", "first", m)
        times = []
        for i in range(args.repeat):
            write_small(small, f"x = {i + 2}")
            with Meter(registry, proxy) as m:
                ref = builder.build(context_of(small))
            times.append(m)
        m = sorted(times, key=lambda t: t.seconds)[len(times) // 2]
        code_size = json.loads(_manifest_bytes(ref))["layers"][-1]["size"]
        record("fairing", "one-line", m, changed_layer_bytes=code_size)
        with Meter(registry, proxy) as m:
            builder.build(context_of(small))
        record("fairing", "unchanged", m)
        with Meter(registry, proxy) as m:
            AppendBuilder(base_ref, proxy.address, repository="bench/fairing-large", cache_dir=cache).build(context_of(large))
        record("fairing", "large-first", m)
        builder.close()

        # ---------------------------------------------------------------- crane
        def crane_append(ctx_parent: Path, target: str):
            layer = work / "layer.tgz"
            run(["tar", "-C", str(ctx_parent), "-czf", str(layer), "app"])
            run([args.crane, "append", "--insecure", "-b", base_ref, "-f", str(layer), "-t", target])
            layer.unlink()

        write_small(small, "x = 1")
        with Meter(registry, proxy) as m:
            crane_append(small.parent, f"{proxy.address}/bench/crane:v1")
        record("crane", "first", m)
        times = []
        for i in range(args.repeat):
            write_small(small, f"x = {i + 2}")
            with Meter(registry, proxy) as m:
                crane_append(small.parent, f"{proxy.address}/bench/crane:v{i + 2}")
            times.append(m)
        record("crane", "one-line", sorted(times, key=lambda t: t.seconds)[len(times) // 2])
        with Meter(registry, proxy) as m:
            crane_append(small.parent, f"{proxy.address}/bench/crane:v{args.repeat + 1}")
        record("crane", "unchanged", m)
        with Meter(registry, proxy) as m:
            crane_append(large.parent, f"{proxy.address}/bench/crane-large:v1")
        record("crane", "large-first", m)

        # ---------------------------------------------------------------- docker
        if docker is not None:
            dockerfile = f'FROM {base_ref}\nWORKDIR /app\nCOPY . /app\nENTRYPOINT {json.dumps(ENTRYPOINT)}\n'
            env = dict(os.environ, DOCKER_BUILDKIT="1")

            def docker_build_push(ctx: Path, target: str):
                (ctx / "Dockerfile").write_text(dockerfile)
                try:
                    run([args.docker, "build", "-q", "-t", target, str(ctx)], env=env)
                    pushed_docker.append(target)
                    run([args.docker, "push", "-q", target], env=env)
                finally:
                    (ctx / "Dockerfile").unlink()

            write_small(small, "x = 1")
            with Meter(registry, proxy) as m:
                docker_build_push(small, f"{proxy.address}/bench/docker:v1")
            record("docker", "first", m)
            times = []
            for i in range(args.repeat):
                write_small(small, f"x = {i + 2}")
                with Meter(registry, proxy) as m:
                    docker_build_push(small, f"{proxy.address}/bench/docker:v{i + 2}")
                times.append(m)
            record("docker", "one-line", sorted(times, key=lambda t: t.seconds)[len(times) // 2])
            with Meter(registry, proxy) as m:
                docker_build_push(small, f"{proxy.address}/bench/docker:v{args.repeat + 1}")
            record("docker", "unchanged", m)
            with Meter(registry, proxy) as m:
                docker_build_push(large, f"{proxy.address}/bench/docker-large:v1")
            record("docker", "large-first", m)

            # ------------------------------------------------------------ fairing-docker
            def fairing_docker(builder, directory):
                ref = builder.build(context_of(directory))
                pushed_docker.append(f"{ref.registry}/{ref.repository}:{ref.tag}")
                return ref

            write_small(small, "x = 1")
            dbuilder = DockerBuilder(base_ref, proxy.address, repository="bench/fairing-docker")
            with Meter(registry, proxy) as m:
                fairing_docker(dbuilder, small)
            record("fairing-docker", "first", m)
            times = []
            for i in range(args.repeat):
                write_small(small, f"x = {i + 2}")
                with Meter(registry, proxy) as m:
                    fairing_docker(dbuilder, small)
                times.append(m)
            record("fairing-docker", "one-line", sorted(times, key=lambda t: t.seconds)[len(times) // 2])
            with Meter(registry, proxy) as m:
                fairing_docker(dbuilder, small)
            record("fairing-docker", "unchanged", m)
            with Meter(registry, proxy) as m:
                fairing_docker(DockerBuilder(base_ref, proxy.address, repository="bench/fairing-docker-large"), large)
            record("fairing-docker", "large-first", m)
    finally:
        if docker is not None:
            for tag in pushed_docker + [base_ref]:
                subprocess.run([docker.cli, "image", "rm", "-f", tag], capture_output=True)
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
        d, k = by.get(("fairing-docker", case)), by.get(("docker", case))
        if d and k:
            summary[f"{case}: fairing-docker/docker time"] = round(d["seconds"] / k["seconds"], 2)
    fo = by[("fairing", "one-line")]
    summary["one-line: fairing bytes_up"] = fo["bytes_up"]
    summary["one-line: changed layer bytes"] = fo["changed_layer_bytes"]
    summary["unchanged: fairing requests"] = by[("fairing", "unchanged")]["requests"]
    print()
    for k, v in summary.items():
        print(f"{k:40} {v}")
    Path(args.json).write_text(json.dumps({"results": results, "summary": summary, "python": sys.version.split()[0],
                                           "cpus": os.cpu_count()}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


_CLIENT = None


def _manifest_bytes(ref: ImageRef) -> bytes:
    from fairing.images.registry import RegistryClient

    with RegistryClient(insecure=True) as client:
        return client.get_manifest(ref)[0]


if __name__ == "__main__":
    sys.exit(main())
