"""The docker compose stack's secrets: one random password per user and a private CA with a
certificate per TLS server, written once into compose/secrets/ (git-ignored), never overwritten.

    .venv/bin/python -m stack.compose_secrets            # creates what is missing
    .venv/bin/python -m stack.compose_secrets --dry-run  # names what it would create

docker-compose.yml mounts each file as a compose secret (/run/secrets/<name>). The folder is mode
0700, so only its owner reaches the files on the host; the files themselves are 0644 because the
containers read their bind mounts as their own non-root users (kafka, clickhouse, mongodb, grafana).
Passwords are URL-safe (they go into URIs and JAAS lines unescaped) and have no trailing newline
(Kafka's DirectoryConfigProvider and Grafana's $__file{} read a file's bytes as the value).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from fresh.settings import REPO_ROOT

SECRETS_DIR = REPO_ROOT / "compose" / "secrets"

# Kafka SCRAM-SHA-512 users (docs/security.md "## Kafka"), MongoDB, ClickHouse and Grafana users.
KAFKA_USERS = ("pf-admin", "pf-connect", "pf-processor", "pf-clickhouse")
PASSWORDS = (
    *(f"kafka-{user}.password" for user in KAFKA_USERS),
    "mongo-root.password",       # MongoDB root: only the mongo service itself (init script, healthcheck)
    "mongo-debezium.password",   # MongoDB user `debezium`: the Connect worker
    "mongo-seed.password",       # MongoDB user `seed`: the init service's `freshctl seed`
    "clickhouse-admin.password",  # ClickHouse user `probablyfresh`: migrations and the init service
    "clickhouse-dashboard.password",  # ClickHouse read-only dashboards user (migration 007): Grafana
    "grafana-admin.password",    # Grafana's admin user
)
# Connection strings built from the passwords above (the Connect worker and freshctl read whole URIs).
MONGO_URIS = {
    "mongo-debezium.uri": ("debezium", "mongo-debezium.password"),
    "mongo-seed.uri": ("seed", "mongo-seed.password"),
}
# The Connect worker's JAAS line (its config provider reads a whole value from one file).
JAAS_FILES = {"kafka-pf-connect.jaas": ("pf-connect", "kafka-pf-connect.password")}
JAAS = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";'
MONGO_URI = "mongodb://{user}:{password}@mongo:27017/?replicaSet=rs0&authSource=admin&tls=true"
# TLS servers: file stem -> the names clients use for it (compose service name, and localhost for healthchecks).
SERVERS = {"kafka": ("kafka",), "clickhouse": ("clickhouse",), "mongo": ("mongo",)}
CA_DAYS = 3650
CERT_DAYS = 825


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # whatever the umask


def _tls_files(directory: Path) -> dict[str, Callable[[], bytes]]:
    """Each TLS file and how to make it; the CA is read back from disk once it exists."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes()), key

    def make_ca_key() -> bytes:
        return pem_key(ec.generate_private_key(ec.SECP256R1()))

    def make_ca_cert() -> bytes:
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ProbablyFresh compose CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    def make_server(stem: str, names: tuple[str, ...]) -> Callable[[], bytes]:
        def make() -> bytes:
            """The server's key and certificate in one PEM (mongod, Kafka's PEM key store), plus its
            .crt and .key apart (ClickHouse), all three written together."""
            ca_cert, ca_key = ca()
            key = ec.generate_private_key(ec.SECP256R1())
            now = dt.datetime.now(dt.UTC)
            alt: list[x509.GeneralName] = [x509.DNSName(n) for n in (*names, "localhost")]
            alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
            cert = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                    .issuer_name(ca_cert.subject).public_key(key.public_key())
                    .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                    .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
                    .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                          ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                    .sign(ca_key, hashes.SHA256()))
            cert_pem = cert.public_bytes(serialization.Encoding.PEM)
            _write(directory / f"{stem}.crt", cert_pem)
            _write(directory / f"{stem}.key", pem_key(key))
            return pem_key(key) + cert_pem
        return make

    files: dict[str, Callable[[], bytes]] = {"ca.key": make_ca_key, "ca.crt": make_ca_cert}
    for stem, names in SERVERS.items():
        files[f"{stem}.pem"] = make_server(stem, names)
    return files


def ensure(directory: Path = SECRETS_DIR, *, dry_run: bool = False) -> list[str]:
    """Create the files that are missing (never overwrite one); returns their names."""
    created: list[str] = []
    if not dry_run:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    for name in PASSWORDS:
        if not (directory / name).exists():
            created.append(name)
            if not dry_run:
                _write(directory / name, secrets.token_urlsafe(24).encode("ascii"))
    for name, (user, password_file) in MONGO_URIS.items():
        if not (directory / name).exists():
            created.append(name)
            if not dry_run:
                password = (directory / password_file).read_text(encoding="ascii")
                _write(directory / name, MONGO_URI.format(user=user, password=password).encode("ascii"))
    for name, (user, password_file) in JAAS_FILES.items():
        if not (directory / name).exists():
            created.append(name)
            if not dry_run:
                password = (directory / password_file).read_text(encoding="ascii")
                _write(directory / name, JAAS.format(user=user, password=password).encode("ascii"))
    for name, make in _tls_files(directory).items():
        if not (directory / name).exists():
            created.append(name)
            if name.endswith(".pem"):
                created += [name.replace(".pem", ".crt"), name.replace(".pem", ".key")]
            if not dry_run:
                # the CA key stays on the host: nothing mounts it (0600)
                _write(directory / name, make(), 0o600 if name == "ca.key" else 0o644)
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack.compose_secrets",
        description="Create the docker compose stack's passwords, CA and server certificates (missing ones only).",
        epilog="Examples:\n  python -m stack.compose_secrets\n  python -m stack.compose_secrets --dry-run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=SECRETS_DIR, help="where (default: compose/secrets)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be created; write nothing")
    args = parser.parse_args(argv)
    created = ensure(args.dir, dry_run=args.dry_run)
    verb = "would create" if args.dry_run else "created"
    for name in created:
        print(f"{verb} {args.dir / name}")
    if not created:
        print(f"{args.dir}: every secret exists; nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
