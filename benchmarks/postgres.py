"""A throwaway PostgreSQL server for the sweep workers' tests and benchmark: ``initdb`` + ``pg_ctl`` on a free port
in a temporary folder, stopped and deleted at the end (``tests/test_sweep_workers.py``'s fixture,
``benchmarks/sweep_workers.py``)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def server_bin() -> Path | None:
    """The folder of PostgreSQL's ``initdb``/``pg_ctl``: on PATH or the Debian package's versioned ``bin``; None
    when neither has one."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1:]), None)
    return Path(os.path.realpath(found)).parent if found else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """A running server: its binaries' folder and port; :attr:`url` has no database, :meth:`database` makes one."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def database(self, name: str) -> str:
        """Create the database ``name`` (``createdb``, no driver needed); its URL."""
        subprocess.run([str(self.folder / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        name], check=True, capture_output=True)
        return f"{self.url}/{name}"


@contextlib.contextmanager
def throwaway_server(folder: Path) -> Iterator[Server]:
    """A PostgreSQL server from the binaries in ``folder`` (:func:`server_bin`) on a free port, its data in a new
    temporary folder (as root: run as the ``postgres`` user, since the server refuses root), without fsync (nothing
    in it outlives it), trusting local connections. Stopped and deleted on exit."""
    root = Path(tempfile.mkdtemp(prefix="distill-pg-"))
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), root / "data"
    try:
        subprocess.run([*as_user, str(folder / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                       check=True, capture_output=True)
        subprocess.run([*as_user, str(folder / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                        f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off", "start"], check=True, capture_output=True)
        yield Server(folder, port)
    finally:
        if data.is_dir():
            subprocess.run([*as_user, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
