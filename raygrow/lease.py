"""One writer per run directory: a lease in `<run>/lease.json`, local or on S3.

Within one Ray cluster the named coordinator refuses a second driver; across clusters (two
embedded clusters on one machine, two clusters on one S3 prefix) nothing would. So the driver
takes a lease before it writes anything and renews it while the run goes on; another driver
finding a live lease is refused with one line naming the holder, and one finding a lease not
renewed for `timeout_s` (its holder died without releasing it) takes it over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from raygrow import storage
from raygrow.errors import RaygrowError

log = logging.getLogger("raygrow")

LEASE_FILE = "lease.json"
SETTLE_S = 0.5  # between writing a lease and reading it back: the last of two racing writers wins


@dataclass
class Holder:
    id: str  # unique per driver process
    host: str
    pid: int
    renewed: float  # wall-clock time of the last renewal (seconds since the epoch)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def alive(self) -> bool:
        """False only when the holder is known dead: a process of this host that no longer runs
        (a driver killed with SIGKILL releases nothing). Other hosts' holders count as alive
        until their lease times out."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: it runs
            return True
        return True


class Lease:
    """The lease of one run directory, renewed by a daemon thread until `release`."""

    def __init__(self, run_dir: str, timeout_s: float):
        self.path = storage.join(run_dir, LEASE_FILE)
        self.timeout_s = timeout_s
        self.holder = Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), time.time())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, run: str) -> None:
        """Take the lease or raise RaygrowError naming its live holder."""
        current = self._read()
        if current is not None and current.id != self.holder.id:
            age = time.time() - current.renewed
            if age < self.timeout_s and current.alive():
                raise RaygrowError(
                    f"run {run} is being written by another driver ({current.describe()}, lease "
                    f"renewed {age:.0f} s ago, {self.path}); wait for it to finish or pick another "
                    f"--name (a lease not renewed for {self.timeout_s:g} s is taken over)")
            log.warning("taking over the lease of run %s from %s (not renewed for %.0f s)", run,
                        current.describe(), age)
        self._write()
        time.sleep(SETTLE_S)
        winner = self._read()
        if winner is None or winner.id != self.holder.id:
            raise RaygrowError(f"run {run} was just taken by another driver "
                               f"({winner.describe() if winner else 'unknown'}); "
                               "pick another --name")
        self._thread = threading.Thread(target=self._renew, daemon=True, name="raygrow-lease")
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = self._read()
        if current is not None and current.id == self.holder.id:
            storage.remove_file(self.path)

    def _renew(self) -> None:
        while not self._stop.wait(self.timeout_s / 4):
            try:
                self._write()
            except OSError as error:  # a failed renewal must not end the run; the next one may work
                log.warning("could not renew the lease %s: %s", self.path, error)

    def _write(self) -> None:
        self.holder.renewed = time.time()
        storage.write_bytes(self.path, json.dumps(asdict(self.holder)).encode())

    def _read(self) -> Holder | None:
        if not storage.exists(self.path):
            return None
        try:
            return Holder(**json.loads(storage.read_bytes(self.path)))
        except (ValueError, TypeError):
            return None  # a torn or foreign file holds no lease
