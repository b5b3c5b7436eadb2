"""The local cluster lives in a network namespace of its own: the host's namespace has
none of its addresses (nor any private-range address of it) and none of its iptables
rules, and reaches it through the veth pair's routes."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest
from conftest import STATE, local_cluster_in_use
from netcheck import host_addresses, host_iptables_rules, links, netns_list, private

pytestmark = [pytest.mark.e2e, pytest.mark.local_cluster, pytest.mark.exclusive]

CLUSTER_NETWORKS = [ipaddress.ip_network(n) for n in ("10.200.0.0/24", "10.244.0.0/16", "10.96.0.0/16")]


@pytest.fixture
def local_cluster(kubeconfig):
    assert local_cluster_in_use()


def test_host_namespace_has_no_cluster_address_or_rule(local_cluster, registry_address):
    addrs = host_addresses()
    in_cluster_nets = {(i, a) for i, a in addrs if any(ipaddress.ip_address(a) in n for n in CLUSTER_NETWORKS)}
    assert not in_cluster_nets, f"cluster addresses in the host namespace: {in_cluster_nets}"
    # The host end of the veth pair has a link-local address only.
    assert {a for i, a in addrs if i == "fairing-h"} == {"169.254.200.2"}
    assert not private((i, a) for i, a in addrs if i.startswith(("fairing", "cni", "veth"))), addrs
    assert not [r for r in host_iptables_rules() if "FAIRING" in r or "KUBE-" in r]
    assert "fairing-cluster" in netns_list() and "fairing-h" in links()


def test_node_address_is_inside_the_cluster_namespace(local_cluster, registry_address):
    netns = (STATE / "netns").read_text().strip()
    node_ip = registry_address.split(":")[0]
    inside = subprocess.run(["nsenter", f"--net={netns}", "ip", "-4", "-o", "addr"], capture_output=True,
                            text=True, check=True).stdout
    assert f"inet {node_ip}/32" in inside
    # ...and the host reaches the registry there through the veth route.
    route = subprocess.run(["ip", "route", "get", node_ip], capture_output=True, text=True, check=True).stdout
    assert "dev fairing-h" in route and "src 169.254.200.2" in route, route
    import urllib.request

    with urllib.request.urlopen(f"http://{registry_address}/v2/", timeout=10) as resp:
        assert resp.status == 200


def test_nothing_in_the_namespace_can_open_a_connection_out(local_cluster):
    """A server of the host, listening on every address, is reached from the host but not
    from inside the cluster's namespace (where pods and components run)."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen()
    port = srv.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(srv.accept()), daemon=True).start()
    try:
        netns = (STATE / "netns").read_text().strip()
        probe = ("import socket,sys\n"
                 "try:\n"
                 f"    socket.create_connection(('169.254.200.2', {port}), timeout=3); print('connected')\n"
                 "except OSError as e:\n"
                 "    print('refused', type(e).__name__)\n")
        out = subprocess.run(["nsenter", f"--net={netns}", sys.executable, "-c", probe], capture_output=True,
                             text=True, timeout=60).stdout
        assert out.startswith("refused"), out
        assert not accepted
        socket.create_connection(("169.254.200.2", port), timeout=3).close()  # the host itself can
    finally:
        srv.close()
