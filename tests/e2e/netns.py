"""Network namespaces for multi-host tests on one machine (iproute2 only, needs root).

One namespace for the aggregator holding a bridge at 10.77.0.1/24, one per silo joined to
it by a veth pair (10.77.0.1x/24). `cut(silo)` takes the silo's link down at the bridge end:
its packets stop, as when a site's uplink fails; nothing tells either process.
"""

from __future__ import annotations

import os
import shutil
import subprocess

AGGREGATOR_IP = "10.77.0.1"


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can (probed by making one)."""
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs as root)"
    probe = f"fbprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Topology:
    """Context manager: the namespaces exist inside `with`, and are deleted on exit."""

    def __init__(self, silo_ids: list[str]) -> None:
        tag = os.getpid()
        self.aggregator_ns = f"fb{tag}agg"
        self.silo_ns = {silo: f"fb{tag}s{i}" for i, silo in enumerate(silo_ids)}
        self.silo_ip = {silo: f"10.77.0.{11 + i}" for i, silo in enumerate(silo_ids)}
        self._bridge_end = {silo: f"fbv{i}" for i, silo in enumerate(silo_ids)}

    def __enter__(self) -> Topology:
        agg = self.aggregator_ns
        try:
            _ip("netns", "add", agg)
            _ip("-n", agg, "link", "set", "lo", "up")
            _ip("-n", agg, "link", "add", "br0", "type", "bridge")
            _ip("-n", agg, "addr", "add", f"{AGGREGATOR_IP}/24", "dev", "br0")
            _ip("-n", agg, "link", "set", "br0", "up")
            for silo, ns in self.silo_ns.items():
                end = self._bridge_end[silo]
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", agg, "link", "add", end, "type", "veth", "peer", "name", "eth0",
                    "netns", ns)  # fmt: skip
                _ip("-n", agg, "link", "set", end, "master", "br0")
                _ip("-n", agg, "link", "set", end, "up")
                _ip("-n", ns, "addr", "add", f"{self.silo_ip[silo]}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for ns in [*self.silo_ns.values(), self.aggregator_ns]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def cut(self, silo: str) -> None:
        _ip("-n", self.aggregator_ns, "link", "set", self._bridge_end[silo], "down")
