"""A self-signed CA and private PostgreSQL / Redis / Sentinel servers that speak only TLS (test helpers)."""

from __future__ import annotations

import datetime as dt
import glob
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.embedded import free_port


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that did not sign the server's certificate


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(directory: Path) -> Pki:
    """A CA and a server certificate for the host name ``localhost`` only (not 127.0.0.1)."""
    ca_key, ca_cert = _ca("metricx test CA")
    _, other = _ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki = Pki(
        directory / "ca.pem", directory / "server.crt", directory / "server.key", directory / "other.pem"
    )
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    pki.other_ca.write_bytes(other.public_bytes(pem))
    pki.cert.write_bytes(cert.public_bytes(pem))
    pki.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pki.key.chmod(0o600)
    assert ipaddress.ip_address("127.0.0.1")  # the certificate deliberately does not name it
    return pki


def _wait_port(port: int, log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start on {port}: {log.read_text() if log.exists() else ''}")


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def tls_postgres(pki: Pki) -> Iterator[int]:
    """A private PostgreSQL (initdb/pg_ctl) on a free port that refuses connections without TLS."""
    binaries = pg_bin()
    assert binaries is not None, "no PostgreSQL server binaries under /usr/lib/postgresql"
    # Its own directory under /tmp: as root the server runs as `postgres`, which must reach it.
    directory = Path(tempfile.mkdtemp(prefix="metricx-tls-pg-"))
    data, port, log = directory / "data", free_port(), directory / "pg.log"
    as_user: list[str] = []
    shutil.copy(pki.cert, directory / "server.crt")
    shutil.copy(pki.key, directory / "server.key")
    (directory / "server.key").chmod(0o600)
    if os.geteuid() == 0:  # initdb refuses root
        as_user = ["runuser", "-u", "postgres", "--"]
        for path in (directory, directory / "server.crt", directory / "server.key"):
            shutil.chown(path, "postgres")
    subprocess.run(
        [*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    (data / "postgresql.auto.conf").write_text(
        f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{directory}'\n"
        f"ssl = on\nssl_cert_file = '{directory / 'server.crt'}'\n"
        f"ssl_key_file = '{directory / 'server.key'}'\n"
        "fsync = off\n"
    )
    (data / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
    )
    pg_ctl = [*as_user, str(binaries / "pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-l", str(log), "-w", "start"], check=True, capture_output=True)
    try:
        _wait_port(port, log, "PostgreSQL")
        yield port
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def _tls_args(pki: Pki) -> list[str]:
    return [
        "--tls-cert-file",
        str(pki.cert),
        "--tls-key-file",
        str(pki.key),
        "--tls-ca-cert-file",
        str(pki.ca),
        "--tls-auth-clients",
        "no",
    ]


@contextmanager
def tls_redis(directory: Path, pki: Pki) -> Iterator[int]:
    """A Redis with only a TLS port (Debian's redis-server is built with TLS)."""
    port, log = free_port(), directory / "redis.log"
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(log),
            *_tls_args(pki),
        ]
    )
    try:
        _wait_port(port, log, "Redis")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def tls_sentinel(directory: Path, pki: Pki, master_port: int) -> Iterator[int]:
    """A Sentinel with only a TLS port, watching the TLS master as ``localhost`` (host names announced)."""
    port, log = free_port(), directory / "sentinel.log"
    conf = directory / "sentinel.conf"
    conf.write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {pki.cert}\ntls-key-file {pki.key}\n"
        f"tls-ca-cert-file {pki.ca}\ntls-auth-clients no\ntls-replication yes\n"
        f"logfile {log}\ndir {directory}\n"
        "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n"
        f"sentinel monitor mymaster localhost {master_port} 1\n"
    )
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"])
    try:
        _wait_port(port, log, "Sentinel")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
