"""A throwaway PostgreSQL server for tests: initdb into a temp folder, pg_ctl start on a
free loopback port, stop and delete at the end.

initdb refuses to run as root, so as root the server runs as the `postgres` user
that Debian's package creates (runuser -u postgres), in a folder that user owns.
Password authentication (scram-sha-256) is on, so a wrong password is refused as
it would be by a real server.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "leangraph"
PASSWORD = "leangraph-test-pw"
DATABASE = "leangraph"


def server_bin():
    """The folder holding initdb and pg_ctl, or None."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True):
        return Path(candidate).parent
    return None


def missing():
    """Why the server binaries cannot be used, or None when initdb and pg_ctl are there.

    Only looks: installing the server is `make postgres`'s job, never a test's."""
    if server_bin() is not None:
        return None
    return "initdb and pg_ctl are not installed: run `make postgres` (as root: it apt-get installs postgresql)"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self):
        self.bin = server_bin()
        self.root = Path(tempfile.mkdtemp(prefix="leangraph-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as = []
        if os.geteuid() == 0:
            # initdb refuses root; the server's files must belong to the user it runs as.
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)

    def _run(self, *args, check=True):
        return subprocess.run([*self._as, *args], capture_output=True, text=True, check=check,
                              cwd=self.root)

    def url(self, password=PASSWORD, port=None, database=DATABASE):
        return f"postgresql://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def start(self):
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                      "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                      "--no-sync")
            options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c max_connections=50")
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                      "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            log = self.root / "log"
            detail = log.read_text()[-800:] if log.exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.strip()} {detail}") from None
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url(database="postgres"), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        return self

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                      "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def trials_of(url, name):
    """The study's trials now (KeyError while it does not exist)."""
    import optuna

    from leangraph.search.storage import close_storage, open_storage

    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=True)
    finally:
        close_storage(storage)
