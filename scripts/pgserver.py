#!/usr/bin/env python3
"""A throwaway PostgreSQL server of the project's own, for tests, benchmarks and the
README's cluster walk-through: started from the server binaries that
``scripts/system-deps`` installs (Debian's ``postgresql``), in a directory of its own,
listening on 127.0.0.1 only, with trust authentication (it is a local test server, never
a production one). Standard library only, so it runs before the venv exists.

    python scripts/pgserver.py start DIR [--port P]   # prints the DSN
        [--listen ADDR]... [--trust CIDR]...          # more addresses, trusted subnets

``--listen``/``--trust`` (``PgServer(listen=, trust=)``) let nodes in the cluster tests'
network namespaces reach it: the server also listens on the bridge's address and trusts
that private subnet; they apply when DIR's server is created.
    python scripts/pgserver.py stop DIR
    python scripts/pgserver.py status DIR

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user
(created by the Debian package), and DIR is given to it: only DIR itself, and only when
it is a fresh one (made now, or empty and root's, as ``mkdtemp`` leaves it) or already
``postgres``'s; any other DIR is refused. Whatever is inside DIR is the server's to make,
and trust authentication makes every local user a database superuser, able to plant
symlinks there as ``postgres``: so root never follows a link inside DIR (no recursive
chown, files written there with ``O_NOFOLLOW`` or replaced by rename).
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVER_USER = "postgres"


class PgServerError(RuntimeError):
    """The test server could not be found, started or stopped; the message says why."""


def find_bindir() -> Path:
    """The directory of PostgreSQL's server binaries: ``$BEAMISH_PG_BINDIR``, else the
    newest ``/usr/lib/postgresql/N/bin``, else where ``initdb`` is on ``PATH``."""
    given = os.environ.get("BEAMISH_PG_BINDIR")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PgServerError("no PostgreSQL server binaries (initdb) found: run "
                        "scripts/system-deps (as root) or set BEAMISH_PG_BINDIR")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL server whose files live in ``root`` (``root/data``, its log
    ``root/server.log``, its socket in ``root``)."""

    def __init__(self, root: str | os.PathLike[str], port: int | None = None,
                 listen: tuple[str, ...] = ("127.0.0.1",), trust: tuple[str, ...] = ()
                 ) -> None:
        self.root = Path(root).resolve()
        self.listen = listen
        self.trust = trust
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.bindir = find_bindir()
        port_file = self.root / "port"
        if port is None and port_file.exists():
            port = int(port_file.read_text())
        self.port = port or free_port()

    @property
    def dsn(self) -> str:
        """How a client reaches the server's default database, ``postgres``."""
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, database: str, host: str = "127.0.0.1") -> str:
        """How a client reaches ``database`` on this server (at ``host``, one of the
        addresses it listens on)."""
        return f"postgresql://{SERVER_USER}@{host}:{self.port}/{database}"

    # -- the server's life ------------------------------------------------------------
    def start(self) -> str:
        """Create the cluster if it does not exist, start the server, wait until it
        accepts connections; return the DSN.

        Raises:
            PgServerError: the server could not start, or (as root) its dir is not one
                to hand to the server user (see the module's docstring).
        """
        fresh = not os.path.lexists(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._hand_over(fresh)
        _replace_file(self.root, "port", str(self.port))
        if not (self.data / "PG_VERSION").exists():
            self._run_as_server([str(self.bindir / "initdb"), "-D", str(self.data),
                                 "-U", SERVER_USER, "--auth=trust", "-E", "UTF8",
                                 "--no-sync"])
            with _append_file(self.data / "postgresql.conf") as conf:
                conf.write(
                    "\n# scripts/pgserver.py: a local test server\n"
                    f"listen_addresses = '{','.join(self.listen)}'\n"
                    f"unix_socket_directories = '{self.root}'\n"
                    "max_connections = 300\n"
                    "shared_buffers = 64MB\n"
                    "fsync = off\n"
                    "full_page_writes = off\n"
                    "log_min_messages = warning\n")
            with _append_file(self.data / "pg_hba.conf") as hba:
                for net in self.trust:
                    hba.write(f"host all all {net} trust\n")
        self._run_as_server([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                             str(self.log), "-o", f"-p {self.port}", "-w", "-t", "60",
                             "start"])
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back and disconnect clients; ``immediate``:
        no shutdown checkpoint, as after a crash)."""
        if not self.running():
            return
        self._run_as_server([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m",
                             mode, "-w", "-t", "60", "stop"])

    def kill(self) -> None:
        """SIGKILL the postmaster and every server process (a crash of the database);
        the next ``start`` recovers from its WAL."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            survivors = self._server_pids()
            if not survivors:
                break
            for p in survivors:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        # A crashed postmaster leaves its pid file and socket lock behind; a start after
        # a real crash finds them stale and goes on, as this one must.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        for leftover in self.root.glob(f".s.PGSQL.{self.port}*"):
            leftover.unlink(missing_ok=True)

    def pid(self) -> int | None:
        """The postmaster's pid, if it runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def running(self) -> bool:
        """Whether the server runs."""
        return self.pid() is not None

    def destroy(self) -> None:
        """Stop the server at once and remove its files."""
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases --------------------------------------------------------------------
    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql as the superuser; return what it printed."""
        out = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", SERVER_USER, "-d", database,
             "-c", sql], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise PgServerError(f"psql {sql!r} failed: {out.stderr.strip()}")
        return out.stdout

    def create_database(self, name: str) -> str:
        """Create an empty database ``name``; return its DSN."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting whoever still uses it."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- helpers ----------------------------------------------------------------------
    def _server_pids(self) -> list[int]:
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and str(self.data).encode() in b" ".join(cmd):
                pids.append(int(proc.name))
        return pids

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _hand_over(self, fresh: bool) -> None:
        """As root: give the server dir (itself only) to the server user, through an fd
        of the directory (never a path a link could redirect). ``fresh``: start made it.

        Raises:
            PgServerError: the dir is a symlink, not a directory, or neither fresh nor
                the server user's already.
        """
        if not self._as_root():
            return
        user = pwd.getpwnam(SERVER_USER)
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise PgServerError(f"{self.root} is not a directory to run a server in "
                                f"({exc.strerror}): give a fresh one") from None
        try:
            st = os.fstat(fd)
            if st.st_uid == user.pw_uid:
                pass  # ours from an earlier start
            elif st.st_uid == os.geteuid() and (fresh or not os.listdir(fd)):
                os.fchown(fd, user.pw_uid, user.pw_gid)
            else:
                raise PgServerError(
                    f"{self.root} is neither a fresh directory nor {SERVER_USER}'s (owner "
                    f"uid {st.st_uid}, {'not ' if os.listdir(fd) else ''}empty): it is not "
                    "handed to the server user; give a new or empty directory")
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)

    def _run_as_server(self, argv: list[str]) -> None:
        if self._as_root():
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        # The server is a service of the machine, not a process of whoever started it: it
        # does not carry the test session's mark, which the tests' leak check looks for
        # (a server restarted inside a test would be taken for a leak and killed).
        env = {k: v for k, v in os.environ.items() if k != "BEAMISH_TEST_SESSION"}
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                             cwd=self.root, env=env)
        if out.returncode != 0:
            tail = _read_tail(self.log, 2000)
            raise PgServerError(f"{' '.join(argv)} failed ({out.returncode}): "
                                f"{out.stderr.strip() or out.stdout.strip()}\n{tail}")


def _replace_file(directory: Path, name: str, text: str) -> None:
    """Make ``directory/name`` a new file holding ``text``, by rename: whatever was at
    that name (a symlink planted by the server user) is replaced, never written through."""
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with open(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, directory / name)


def _append_file(path: Path) -> io.TextIOWrapper:
    """``path`` (initdb's, the server user's) opened to append to, refusing a symlink or a
    hard link there.

    Raises:
        PgServerError: ``path`` is a link.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    except OSError as exc:
        raise PgServerError(f"cannot append to {path}: {exc.strerror}") from None
    if os.fstat(fd).st_nlink != 1:
        os.close(fd)
        raise PgServerError(f"{path} has other hard links: refusing to append to it")
    return open(fd, "a")


def _read_tail(path: Path, size: int) -> str:
    """The last ``size`` characters of log ``path`` ("" when it is absent or a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with open(fd, errors="replace") as fh:
        return fh.read()[-size:]


def main(argv: list[str] | None = None) -> int:
    """The command line: start, stop or ask about a test server in DIR."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "destroy"])
    parser.add_argument("dir", help="where the server's files live")
    parser.add_argument("--port", type=int, help="TCP port (default: a free one)")
    parser.add_argument("--listen", action="append", default=[], metavar="ADDR",
                        help="listen on ADDR too (besides 127.0.0.1)")
    parser.add_argument("--trust", action="append", default=[], metavar="CIDR",
                        help="let clients from this subnet in (test servers only)")
    args = parser.parse_args(argv)
    server = PgServer(args.dir, port=args.port, listen=("127.0.0.1", *args.listen),
                      trust=tuple(args.trust))
    try:
        if args.action == "start":
            print(server.start())
        elif args.action == "stop":
            server.stop()
        elif args.action == "destroy":
            server.destroy()
        else:
            print(f"{'running' if server.running() else 'stopped'} {server.dsn}")
    except PgServerError as e:
        print(f"pgserver: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
