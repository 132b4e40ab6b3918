"""A throwaway PostgreSQL server for tests: Debian's binaries, a cluster in a temp dir, loopback TCP only.

`initdb` refuses to run as root, so under root the cluster belongs to the `postgres` user the Debian package
creates, and the server runs as that user. Each test asks for a fresh database (`new_database`).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tclearn.ledger.localchain import free_port

USER = "tclearn"


def postgres_bin() -> Path | None:
    """The newest `/usr/lib/postgresql/<version>/bin` that has a server (None: not installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class LocalPostgres:
    """`with LocalPostgres(bin_dir) as pg: url = pg.new_database()`; the cluster is deleted on exit."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="tclearn-pg-"))
        self._as: dict[str, object] = {}
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as the package's postgres user
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root needs the `postgres` user (Debian's postgresql package)") from None
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        self._process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count()

    def __enter__(self) -> LocalPostgres:
        try:
            return self._start()
        except BaseException:  # initdb or the server failed: no cluster folder or server left behind
            self.__exit__(None, None, None)
            raise

    def _start(self) -> LocalPostgres:
        data = self.folder / "data"
        initdb = [str(self.bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8"]
        subprocess.run([*initdb, "--locale=C", "--no-sync"], check=True, capture_output=True, **self._as)  # type: ignore[call-overload]
        server = [str(self.bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port)]
        # unix socket in the temp dir; durability off: a test cluster lives for one session
        tuning = [
            "-k",
            str(self.folder),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        self._log = open(self.folder / "server.log", "wb")  # noqa: SIM115 -- the server writes it until __exit__
        self._process = subprocess.Popen([*server, *tuning], stdout=self._log, stderr=subprocess.STDOUT, **self._as)  # type: ignore[call-overload]
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        ready = [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-q"]
        deadline = time.monotonic() + timeout
        while subprocess.run(ready, check=False).returncode != 0:
            assert self._process is not None
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"PostgreSQL did not start: {(self.folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)  # fast shutdown: the test process may still hold connections
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
            self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
