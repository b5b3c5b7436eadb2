"""tests/cluster/down leaves no process, network namespace, interface or mount of the
cluster; up brings it back and adds no private-range address or iptables rule to the
host's own namespace.

Runs last (tests/conftest.py orders it after every other test) and only against the
local cluster of tests/cluster/up: with $KUBECONFIG pointing elsewhere there is nothing
of ours to stop."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import CLUSTER_DIR, STATE, local_cluster_in_use
from netcheck import host_addresses, host_iptables_rules, links, netns_list, private


def _cluster_processes() -> list[str]:
    """Every live process that belongs to the cluster, found from /proc alone."""
    found = []
    sock = "/run/fairing-cluster/containerd.sock"
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            exe = os.readlink(d / "exe")
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if exe.startswith(str(STATE / "bin")) or f"{STATE}/containerd/config.toml" in cmd \
                or f"{STATE}/registry.d/config.yml" in cmd or f"-address {sock}" in cmd:
            found.append(f"{d.name}: {cmd.strip()}")
    for procs in Path("/sys/fs/cgroup").glob("*/kubepods*/**/cgroup.procs"):
        for pid in procs.read_text().split():
            found.append(f"{pid}: in {procs.parent}")
    return found


@pytest.mark.local_cluster
@pytest.mark.exclusive
def test_down_stops_every_process_then_up_restores(kubeconfig):
    assert local_cluster_in_use()
    assert _cluster_processes(), "the local cluster should be running before down"
    down = subprocess.run([str(CLUSTER_DIR / "down")], capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr
    left = _cluster_processes()
    assert not left, "processes left after tests/cluster/down:\n" + "\n".join(left)
    status = subprocess.run([str(CLUSTER_DIR / "status"), "--pids"], capture_output=True, text=True, timeout=60)
    assert status.stdout.strip() == ""
    assert "fairing-cluster" not in netns_list() and not {n for n in netns_list() if n.startswith("cni-")}
    assert not {name for name in links() if name.startswith(("fairing", "cni"))}, links()
    mounts = Path("/proc/self/mountinfo").read_text().split("\n")
    ours = [m for m in mounts if f" {STATE}/" in m or " /run/fairing-cluster" in m
            or " /run/netns/fairing-cluster " in m or " /run/netns/cni-" in m]
    assert not ours, "mounts left after tests/cluster/down:\n" + "\n".join(ours)

    addresses, rules = host_addresses(), host_iptables_rules()
    up = subprocess.run([str(CLUSTER_DIR / "up")], capture_output=True, text=True, timeout=1800)
    assert up.returncode == 0, up.stderr[-4000:]
    assert _cluster_processes()
    added = host_addresses() - addresses
    assert not private(added), f"up added private-range addresses to the host namespace: {private(added)}"
    assert host_iptables_rules() - rules == set(), "up added iptables rules to the host namespace"
