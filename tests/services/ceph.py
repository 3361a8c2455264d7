"""A throwaway single-node Ceph cluster for the RBD and RADOS lock tests.

One mon and one memstore OSD bound to 127.0.0.1 on free ports, all state under one temp dir,
cephx on, pool size 1, a pool ``rbd`` initialised for rbd and a restricted client
(``profile rbd``) like nova's. Fast paxos settings make start-up take about a second and a
low ``osd_client_watch_timeout`` makes crash takeover take seconds instead of 30.

Used as a module (``start()`` returns a ``Cluster`` whose ``stop()`` kills exactly the
daemons it started) or from the command line::

    python tests/services/ceph.py start DIR   # prints the conffile path, leaves it running
    python tests/services/ceph.py stop DIR

When the Ceph daemons are missing and we run as root, ``ceph-mon ceph-osd ceph-common`` (and
``python3-rbd`` for the python-rbd peer) are installed with apt-get.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["ceph-mon", "ceph-osd", "ceph-common", "python3-rbd", "python3-rados"]
CLIENT = "openstack"
WATCH_TIMEOUT = 5
POOL = "rbd"


class CephUnavailable(RuntimeError):
    """The cluster could not be started (packages missing and not installable, daemon failed)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_packages() -> None:
    """Install the Ceph daemons (and python3-rbd for the peer tests) when missing and root."""
    tools = ("ceph-mon", "ceph-osd", "ceph", "ceph-authtool", "monmaptool", "rbd")
    missing = [b for b in tools if not shutil.which(b)]
    if not missing and _has_python_rbd():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        if missing:
            raise CephUnavailable(
                f"Ceph programs missing ({', '.join(missing)}); install {' '.join(PACKAGES)}"
            )
        return
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=900", "install", "-y", "-q", *PACKAGES]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        update = ["apt-get", "-o", "DPkg::Lock::Timeout=900", "update", "-q"]
        subprocess.run(update, env=env, capture_output=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise CephUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {r.stderr[-500:]}")


def _has_python_rbd() -> bool:
    if not Path("/usr/bin/python3").exists():
        return False
    r = subprocess.run(["/usr/bin/python3", "-c", "import rbd, rados"], capture_output=True)
    return r.returncode == 0


@dataclass
class Cluster:
    dir: Path
    conffile: Path
    client: str = CLIENT
    pool: str = POOL
    watch_timeout: int = WATCH_TIMEOUT
    mon_addr: str = ""
    pids: list[int] = field(default_factory=list)
    # made by start() itself (not given): removed by stop()
    owns_dir: bool = False

    @property
    def keyring(self) -> Path:
        return self.dir / f"ceph.client.{self.client}.keyring"

    @property
    def admin_keyring(self) -> Path:
        return self.dir / "ceph.client.admin.keyring"

    def env(self) -> dict[str, str]:
        return dict(os.environ, CEPH_CONF=str(self.conffile))

    def ceph(self, *args: str, timeout: float = 30) -> str:
        """Run the ``ceph`` CLI as client.admin; returns stdout."""
        r = subprocess.run(
            ["ceph", "-c", str(self.conffile), "--connect-timeout", "10", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise CephUnavailable(f"ceph {' '.join(args)} failed: {r.stderr.strip()[-400:]}")
        return r.stdout

    def rbd(self, *args: str, timeout: float = 30) -> str:
        r = subprocess.run(
            ["rbd", "-c", str(self.conffile), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise CephUnavailable(f"rbd {' '.join(args)} failed: {r.stderr.strip()[-400:]}")
        return r.stdout

    def stop(self) -> None:
        """Stop the daemons this cluster started: the OSD first (it lingers without its mon)."""
        for pid in reversed(self.pids):
            _kill(pid)
        self.pids.clear()
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            # Our daemons are not our children (they daemonize): probe by signal 0.
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run(argv: list[str], **kw: object) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)  # type: ignore
    if r.returncode != 0:
        raise CephUnavailable(f"{' '.join(argv[:3])} failed: {r.stderr.strip()[-600:]}")
    return r.stdout


def _read_pid(path: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise CephUnavailable(f"no pid file {path}")


def _conf(d: Path, mon_host: str, fsid: str) -> str:
    return f"""[global]
fsid = {fsid}
mon host = {mon_host}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$cluster-$name.log
crash dir = {d}/crash
mon data = {d}/mon-$id
osd data = {d}/osd-$id
keyring = {d}/ceph.$name.keyring
osd objectstore = memstore
memstore device bytes = 1073741824
paxos propose interval = 0.01
paxos min wait = 0.001
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
mon allow pool delete = true
mon mgr mkfs grace = 86400
osd client watch timeout = {WATCH_TIMEOUT}
mon osd down out interval = 0

[client]
client mount timeout = 15
rados mon op timeout = 30
rados osd op timeout = 30
"""


def start(base: Path | None = None) -> Cluster:
    """Start a cluster under ``base`` (a new temp dir when None). Raises CephUnavailable."""
    ensure_packages()
    d = Path(base) if base else Path(tempfile.mkdtemp(prefix="ferrolock-ceph-"))
    for sub in ("run", "log", "crash", "mon-a", "osd-0"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    p2, p1 = _free_port(), _free_port()
    mon_host = f"[v2:127.0.0.1:{p2},v1:127.0.0.1:{p1}]"
    conf = d / "ceph.conf"
    conf.write_text(_conf(d, mon_host, fsid))
    cluster = Cluster(dir=d, conffile=conf, mon_addr=mon_host, owns_dir=base is None)
    c = str(conf)
    try:
        mkfs_keyring = d / "mkfs.keyring"
        _run(
            [
                "ceph-authtool",
                "--create-keyring",
                str(mkfs_keyring),
                "--gen-key",
                "-n",
                "mon.",
                "--cap",
                "mon",
                "allow *",
            ]
        )
        admin = cluster.admin_keyring
        _run(
            [
                "ceph-authtool",
                "--create-keyring",
                str(admin),
                "--gen-key",
                "-n",
                "client.admin",
                "--cap",
                "mon",
                "allow *",
                "--cap",
                "osd",
                "allow *",
                "--cap",
                "mgr",
                "allow *",
            ]
        )
        osd_key = d / "ceph.osd.0.keyring"
        _run(
            [
                "ceph-authtool",
                "--create-keyring",
                str(osd_key),
                "--gen-key",
                "-n",
                "osd.0",
                "--cap",
                "mon",
                "allow profile osd",
                "--cap",
                "mgr",
                "allow profile osd",
                "--cap",
                "osd",
                "allow *",
            ]
        )
        for k in (admin, osd_key):
            _run(["ceph-authtool", str(mkfs_keyring), "--import-keyring", str(k)])
        monmap = d / "monmap"
        _run(
            [
                "monmaptool",
                "--create",
                "--fsid",
                fsid,
                "--addv",
                "a",
                f"[v2:127.0.0.1:{p2},v1:127.0.0.1:{p1}]",
                str(monmap),
            ]
        )
        _run(
            [
                "ceph-mon",
                "-c",
                c,
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                str(monmap),
                "--keyring",
                str(mkfs_keyring),
            ]
        )
        shutil.copy(mkfs_keyring, d / "mon-a" / "keyring")
        _run(["ceph-mon", "-c", c, "-i", "a"])
        deadline = time.monotonic() + 60
        cluster.pids.append(_read_pid(d / "run" / "mon.a.pid", deadline))
        osd_uuid = str(uuid.uuid4())
        cluster.ceph("osd", "new", osd_uuid, "0")
        _run(["ceph-osd", "-c", c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid])
        shutil.copy(osd_key, d / "osd-0" / "keyring")
        _run(["ceph-osd", "-c", c, "-i", "0"])
        cluster.pids.append(_read_pid(d / "run" / "osd.0.pid", deadline))
        while True:
            stat = json.loads(cluster.ceph("osd", "stat", "-f", "json"))
            if stat.get("num_up_osds", 0) >= 1:
                break
            if time.monotonic() > deadline:
                raise CephUnavailable("the OSD did not come up within 60 s")
            time.sleep(0.05)
        cluster.ceph("osd", "pool", "create", POOL, "8", "8", "replicated")
        cluster.rbd("pool", "init", POOL)
        key = cluster.ceph(
            "auth",
            "get-or-create",
            f"client.{CLIENT}",
            "mon",
            "profile rbd",
            "osd",
            f"profile rbd pool={POOL}",
            "mgr",
            f"profile rbd pool={POOL}",
        )
        cluster.keyring.write_text(key)
        (d / "cluster.json").write_text(json.dumps({"pids": cluster.pids}))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def stop_dir(d: Path) -> None:
    info = json.loads((d / "cluster.json").read_text())
    for pid in reversed(info["pids"]):
        _kill(pid)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__)
        return 2
    d = Path(argv[2])
    if argv[1] == "start":
        cl = start(d)
        print(cl.conffile)
    else:
        stop_dir(d)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
