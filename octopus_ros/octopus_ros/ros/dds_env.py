"""The DDS environment of octopus_ros on one machine, and how to check what a process really opened.

Keeping traffic on the machine is the job of the Fast DDS profile ``config/fastdds_localhost.xml``
(shared memory + UDPv4 bound to 127.0.0.1, unicast discovery to 127.0.0.1, no multicast). It is
used with ``ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT``: with ``LOCALHOST``, rmw_fastrtps appends
its own UDPv4 transport without an interface allowlist (and a second, default-sized shared-memory
transport) to the profile's, and that transport binds sockets to 0.0.0.0 and to the address of
every network interface. ``scripts/env.sh`` and the tests' ``ros_env`` fixture take their values
from here.

The inspection helpers read ``/proc`` only (no rclpy, no sockets of their own): the UDP/TCP
sockets a process holds (``/proc/<pid>/net/{udp,udp6,tcp,tcp6}`` joined with the socket inodes
of ``/proc/<pid>/fd``) and the shared-memory segments it maps (``/proc/<pid>/maps``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from octopus_ros.paths import config_path

PROFILE_NAME = "fastdds_localhost.xml"
# The profile owns discovery; see the module docstring for why this is not LOCALHOST.
DISCOVERY_RANGE = "SYSTEM_DEFAULT"
RMW = "rmw_fastrtps_cpp"
# Seconds a fresh participant waits, once its writers have matched a node's readers, before it
# publishes: matching is per side, and the node's readers may not have matched the new writers
# yet, so a first message sent at once can be dropped (octopus_replay --online saw its first
# frame dropped and the utterance judged on a stale one). The replay and the test harness wait it.
MATCH_SETTLE_S = 1.0
# Ranges that keep discovery, and so all traffic, on this machine with the profile: SYSTEM_DEFAULT
# (the default: the profile's unicast discovery to 127.0.0.1) and LOCALHOST (what a shell set up
# for "nothing leaves this machine" exports; rmw_fastrtps then also holds UDP sockets bound to
# every interface, which the profile alone avoids, but discovers peers on this machine only).
KEEPS_ON_MACHINE = (DISCOVERY_RANGE, "LOCALHOST")


def profile_path() -> Path:
    """The project's loopback-only Fast DDS profile."""
    return config_path(PROFILE_NAME)


def localhost_env(domain_id: int) -> dict[str, str]:
    """Environment variables for a ROS process that talks only to this machine, on ``domain_id``."""
    return {
        "ROS_DOMAIN_ID": str(int(domain_id)),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": DISCOVERY_RANGE,
        "RMW_IMPLEMENTATION": RMW,
        "FASTDDS_DEFAULT_PROFILES_FILE": str(profile_path()),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def environment_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why ``environ`` (default: this process's) could let DDS traffic leave the machine, or None."""
    environ = os.environ if environ is None else environ
    profile = environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    rng = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    ours = bool(profile) and Path(profile).resolve() == profile_path().resolve()
    if not ours:
        return (
            f"FASTDDS_DEFAULT_PROFILES_FILE is {profile!r}, not {profile_path()} "
            "(run via make, or `source scripts/env.sh`)"
        )
    if rng not in KEEPS_ON_MACHINE:
        return (
            f"ROS_AUTOMATIC_DISCOVERY_RANGE is {rng!r}; with the localhost profile use {DISCOVERY_RANGE!r} "
            "(the profile's loopback-only discovery) or 'LOCALHOST'"
        )
    return None


def shm_segment_size(profile: Path | None = None) -> int:
    """``segment_size`` (bytes) of the SHM transport declared in a Fast DDS profile."""
    path = profile or profile_path()
    root = ET.parse(path).getroot()
    for desc in root.iter():
        if not desc.tag.endswith("transport_descriptor"):
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in desc}
        if fields.get("type") == "SHM" and fields.get("segment_size"):
            return int(fields["segment_size"])
    raise ValueError(f"{path}: no SHM transport with a segment_size")


# ---------------------------------------------------------------------- /proc inspection
@dataclass(frozen=True)
class SocketBind:
    """One socket of a process: protocol (udp, udp6, tcp, tcp6), local address and port."""

    proto: str
    address: str
    port: int
    inode: int

    @property
    def loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback

    def __str__(self) -> str:
        return f"{self.proto} {self.address}:{self.port} (inode {self.inode})"


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _decode_address(hex_addr: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_addr)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc prints an IPv6 address as four host-order (little-endian) 32-bit words.
    words = struct.unpack("<4I", raw)
    return socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))


def process_sockets(pid: int, protos: Iterable[str] = ("udp", "udp6", "tcp", "tcp6")) -> list[SocketBind]:
    """The IP sockets process ``pid`` holds, from ``/proc/<pid>/net/*`` and its fds' inodes."""
    inodes = _socket_inodes(pid)
    found = []
    for proto in protos:
        table = Path(f"/proc/{pid}/net/{proto}")
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            inode = int(fields[9])
            if inode not in inodes:
                continue  # a socket of another process in the same network namespace
            hex_addr, hex_port = fields[1].split(":")
            found.append(
                SocketBind(proto, _decode_address(hex_addr, proto.endswith("6")), int(hex_port, 16), inode)
            )
    return found


def non_loopback(sockets: Iterable[SocketBind]) -> list[SocketBind]:
    """The sockets bound to anything but a loopback address (0.0.0.0 and :: included)."""
    return [s for s in sockets if not s.loopback]


def shm_segments(pid: int, prefix: str = "/dev/shm/fastdds_") -> dict[str, int]:
    """Fast DDS shared-memory files mapped by ``pid``: path -> mapped bytes (summed over mappings)."""
    sizes: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) < 6 or not fields[5].startswith(prefix):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        sizes[fields[5]] = sizes.get(fields[5], 0) + end - start
    return sizes


def shm_data_segments(pid: int) -> dict[str, int]:
    """The data segments among :func:`shm_segments` (not the per-port queues ``fastdds_port*``)."""
    return {p: n for p, n in shm_segments(pid).items() if not Path(p).name.startswith("fastdds_port")}
