"""Which process of a gateway's tree is which, and how much memory each holds (Linux /proc).

Roles come from a process's place in the tree and from its sockets, not from names, since the tree is
changing (ModelPort may gain a separate log service process):

- a process holding a listening socket on the gateway's port is a *worker*;
- the root is the *supervisor* when other processes serve the port, else it is the only worker;
- the *log service* names itself "modelport-log" (prctl PR_SET_NAME, seen in /proc/<pid>/comm);
- multiprocessing's *resource tracker* (started beside spawned children) is named by its command line;
- any other process is taken for the log service as well (a version that does not name it).

Every process's name and command line are kept with its role, so a reader can check the guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from resources import children_by_parent, tree_pids

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column
LOG_SERVICE_NAME = "modelport-log"  # src/modelport/logs/service.py, PROCESS_NAME


@dataclass(frozen=True)
class GatewayProcess:
    pid: int
    role: str  # "supervisor" | "worker" | "log service" | "resource tracker"
    name: str  # /proc/<pid>/comm
    cmdline: str


def listening_inodes(port: int) -> set[int]:
    """Socket inodes listening on `port` (IPv4 and IPv6): one per worker with SO_REUSEPORT."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl local_address rem_address st ... uid timeout inode
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets a process has open (its fds read 'socket:[<inode>]')."""
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def gateway_processes(root: int, port: int) -> list[GatewayProcess]:
    """Every live process of the tree under `root`, with its role; ordered by pid."""
    listening = listening_inodes(port)
    pids = sorted(tree_pids(root, children_by_parent()))
    serving = {pid for pid in pids if socket_inodes(pid) & listening}
    return [GatewayProcess(pid, _role(pid, root, serving), process_name(pid), cmdline(pid)) for pid in pids]


def _role(pid: int, root: int, serving: set[int]) -> str:
    if pid == root:
        return "supervisor" if serving - {root} else "worker"
    if pid in serving:
        return "worker"
    if process_name(pid) == LOG_SERVICE_NAME:
        return "log service"
    if "multiprocessing.resource_tracker" in cmdline(pid):
        return "resource tracker"
    return "log service"


def memory_mb(pid: int) -> tuple[float, float] | None:
    """(RSS, anonymous RSS) in MB from /proc/<pid>/status; None once the process is gone.
    Anonymous RSS leaves out file-backed pages (code, shared libraries), so growth there is heap."""
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            values[name] = int(rest.split()[0]) / 1024  # kB
    if "VmRSS" not in values:
        return None  # a zombie has no memory lines
    return values["VmRSS"], values.get("RssAnon", 0.0)
