"""Real-broker helpers for the deployment tests: throwaway certificates (openssl),
password files (mosquitto_passwd), and a mosquitto process on a given config."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from swarm.bus.broker import find_mosquitto, free_port

__all__ = ["free_port"]  # re-exported for the launch tests


def run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=60)


def certificates(folder: Path, name: str) -> None:
    """A CA and a broker certificate for 127.0.0.1 signed by it (P-256, one day)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", folder / f"{name}-ca.key",
        "-out", folder / f"{name}-ca.crt", "-days", "1", "-subj", f"/CN={name} test CA")
    run("openssl", "req", *ec, "-keyout", folder / f"{name}.key",
        "-out", folder / f"{name}.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", folder / f"{name}.csr", "-CA", folder / f"{name}-ca.crt",
        "-CAkey", folder / f"{name}-ca.key", "-CAcreateserial", "-days", "1",
        "-extfile", folder / "san.ext", "-out", folder / f"{name}.crt")


def passwords(path: Path, users: dict[str, str]) -> None:
    for i, (user, password) in enumerate(users.items()):
        run("mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", path, user, password)


class Broker:
    def __init__(self, conf: Path, port: int) -> None:
        self.log = conf.with_suffix(".log")
        self._log_file = open(self.log, "wb")
        mosquitto = find_mosquitto()
        assert mosquitto is not None, "mosquitto is installed by make system-packages"
        self.proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=self._log_file,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mosquitto refused the config:\n{self.log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto not listening on {port}:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()




def as_test_user(text: str) -> str:
    """Started as root, mosquitto drops to the "mosquitto" user, which cannot read a
    test's private tmp folder (installed, the files are root:mosquitto 0640 in
    /etc/mosquitto/swarm/). Keep the test's own user instead."""
    return text + ("user root\n" if os.geteuid() == 0 else "")
