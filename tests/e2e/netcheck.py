"""What the local cluster adds to the host's own network namespace, read with iproute2
and iptables-save: the test of tests/cluster/up's isolation compares these."""

from __future__ import annotations

import ipaddress
import json
import subprocess

PRIVATE_RANGES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


def host_addresses() -> set[tuple[str, str]]:
    """(interface, address) of every IPv4 address in this process's network namespace."""
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    return {(link["ifname"], a["local"]) for link in json.loads(out) for a in link.get("addr_info", [])}


def private(addresses) -> set[tuple[str, str]]:
    return {(i, a) for i, a in addresses if any(ipaddress.ip_address(a) in n for n in PRIVATE_RANGES)}


def host_iptables_rules() -> set[str]:
    """The host namespace's iptables rules and chains (counters dropped)."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return {line.split(" [")[0] for line in out.splitlines() if line.startswith((":", "-A"))}


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}
