"""The test server's tooling run as root (scripts/pgserver.py): its dir belongs to the
``postgres`` user, and trust authentication lets any local user act as that user through
the database (``COPY ... TO PROGRAM``); so root never follows what it finds in that dir,
and refuses a dir that is neither fresh nor the server user's."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from pgserver import PgServer, PgServerError  # scripts/, on the path by conftest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the hand-over happens as root")


def _victim(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_links_the_server_user_plants_in_its_dir_are_never_followed(tmp_path):
    owned = _victim(tmp_path / "owned", "root's file\n")
    written = _victim(tmp_path / "written", "root's other file\n")
    server = PgServer(tempfile.mkdtemp(prefix="beamish-pgsec-"))
    try:
        server.start()
        # As any local user can, through the database: links made by the server user.
        for link, to in (("innocent", owned), ("port", written)):
            server.psql(f"COPY (SELECT 1) TO PROGRAM 'cat >/dev/null; ln -sfn {to} {server.root / link}'")
        assert os.path.islink(server.root / "port")
        server.stop()
        server.start()
        assert server.running()
    finally:
        server.destroy()
    for victim, text in ((owned, "root's file\n"), (written, "root's other file\n")):
        st = os.stat(victim)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600), victim
        assert victim.read_text() == text


@pytest.mark.parametrize("case", ["root_not_empty", "another_users"])
def test_a_dir_neither_fresh_nor_the_server_users_is_refused(case):
    base = Path(tempfile.mkdtemp(prefix="beamish-pgsec-"))
    os.chmod(base, 0o755)  # the server user could work in it: only the check refuses it
    root = base / "pg"
    root.mkdir()
    if case == "root_not_empty":
        (root / "something").write_text("kept\n")
    else:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    server = PgServer(root)
    try:
        with pytest.raises(PgServerError, match="neither a fresh directory"):
            server.start()
        assert not server.data.exists()
        st = os.stat(root)
        assert st.st_uid == (0 if case == "root_not_empty" else pwd.getpwnam("nobody").pw_uid)
        if case == "root_not_empty":
            assert os.stat(root / "something").st_uid == 0
    finally:
        if server.running():
            server.destroy()
        shutil.rmtree(base)
