"""TCP sockets of this machine from the kernel's sock_diag netlink interface (what `ss` uses).

The same facts as /proc/net/tcp{,6} (addresses, state, the owner's uid, the inode), but
asked for precisely: one connection by its four addresses, or the listening sockets
only. /proc/net/tcp makes the kernel print every socket of the machine, which with a
hundred servers starting and their clients' connections cost the hub ~30 ms per look.
Unprivileged processes may ask too. Plain OS code: nothing here imports JupyterHub.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 0x0A
NO_COOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_REQUEST = struct.Struct("=BBBBI")  # inet_diag_req_v2 before its sockid
_MESSAGE = struct.Struct("=BBBB")  # inet_diag_msg before its sockid: family, state, ...
_SOCKID_SIZE = 48  # ports (network order), src[16], dst[16], interface, cookie[2]
_TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class DiagSocket:
    family: int
    local: tuple[IPAddress, int]
    remote: tuple[IPAddress, int]
    state: int
    uid: int
    inode: int  # 0 for a connection still waiting in its listener's queue


def _packed(ip: IPAddress, family: int) -> bytes:
    if family == socket.AF_INET6 and isinstance(ip, ipaddress.IPv4Address):
        ip = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return ip.packed.ljust(16, b"\0")


def _address(raw: bytes, family: int) -> IPAddress:
    ip = ipaddress.ip_address(raw[:4] if family == socket.AF_INET else raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _sockid(local: tuple[IPAddress, int], remote: tuple[IPAddress, int], family: int) -> bytes:
    return (struct.pack("!HH", local[1], remote[1]) + _packed(local[0], family)
            + _packed(remote[0], family) + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE))


def _parse(payload: bytes) -> DiagSocket:
    family, state, _timer, _retrans = _MESSAGE.unpack_from(payload)
    sockid = payload[_MESSAGE.size:_MESSAGE.size + _SOCKID_SIZE]
    sport, dport = struct.unpack_from("!HH", sockid)
    *_, uid, inode = _TAIL.unpack_from(payload, _MESSAGE.size + _SOCKID_SIZE)
    return DiagSocket(family, (_address(sockid[4:20], family), sport),
                      (_address(sockid[20:36], family), dport), state, uid, inode)


def _ask(family: int, states: int, sockid: bytes, dump: bool) -> list[DiagSocket]:
    """(OSError when the kernel has no sock_diag for FAMILY, or refuses.)"""
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, states) + sockid
    flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
    found: list[DiagSocket] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.sendall(_HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, flags, 1, 0)
                   + body)
        while True:
            data = nl.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
                payload = data[offset + _HEADER.size:offset + length]
                offset += (length + 3) & ~3
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code in (0, errno.ENOENT):  # an acknowledgement; nothing found
                        return found
                    raise OSError(code, os.strerror(code))
                if kind == SOCK_DIAG_BY_FAMILY:
                    found.append(_parse(payload))
            if not dump:
                return found


def connection_end(local: tuple[IPAddress, int], remote: tuple[IPAddress, int],
                   family: int) -> DiagSocket | None:
    """The socket of FAMILY's tables bound to LOCAL and connected to REMOTE (a listener is
    never one), None if there is none."""
    for found in _ask(family, 0xFFFFFFFF, _sockid(local, remote, family), dump=False):
        if found.state != TCP_LISTEN and found.local == local and found.remote == remote:
            return found
    return None


def listeners(family: int, port: int) -> list[DiagSocket]:
    """FAMILY's listening TCP sockets on PORT."""
    any_address = ipaddress.ip_address("::" if family == socket.AF_INET6 else "0.0.0.0")
    everyone = _ask(family, 1 << TCP_LISTEN, _sockid((any_address, 0), (any_address, 0),
                                                     family), dump=True)
    return [s for s in everyone if s.local[1] == port]
