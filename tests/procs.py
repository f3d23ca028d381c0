"""Processes and their listening sockets, read from /proc (Linux; no psutil needed)."""

import os
import socket

from benchmarks.drills import descendants  # noqa: F401 - the tests' name for it too


def _address(hex_addr, family):
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    # /proc prints the address as 32-bit words in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw), int(port, 16)


def listening_sockets():
    """inode -> (protocol, ip, port) of every listening TCP socket and every unconnected bound UDP socket."""
    out = {}
    for proto, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)) + (
        ("udp", socket.AF_INET),
        ("udp6", socket.AF_INET6),
    ):
        try:
            lines = open("/proc/net/" + proto).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            listens = f[3] == "0A" if proto.startswith("tcp") else _address(f[2], family)[1] == 0
            if listens:
                ip, port = _address(f[1], family)
                out[int(f[9])] = (proto, ip, port)
    return out


def sockets_of(pids):
    """[(pid, command name, protocol, ip, port)] of the listening sockets these processes hold."""
    listening, out = listening_sockets(), []
    for pid in pids:
        try:
            comm = open("/proc/%d/comm" % pid).read().strip()
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in listening:
                out.append((pid, comm) + listening[int(target[8:-1])])
    return sorted(set(out))


def is_loopback(ip):
    return ip == "::1" or ip.startswith("127.") or ip.startswith("::ffff:127.")
