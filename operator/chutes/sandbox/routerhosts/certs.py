"""Test PKI for the emulator, made with ``cryptography``: a CA, a server certificate for ``localhost``,
``127.0.0.1`` and ``::1``, and a client certificate, as PEM files in one folder.

``ensure_certs(folder)`` reuses the files already there (a restarted emulator keeps its CA, so the operator's
mounted files stay valid) and makes the missing set otherwise. Keys are ECDSA P-256, written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertFiles", "ensure_certs", "issue_certificate", "make_certs"]

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class CertFiles:
    """Paths of the PEM files: the CA (and its key), the server's pair, the client's pair."""

    folder: str
    ca: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _paths(folder: Path) -> CertFiles:
    return CertFiles(
        folder=str(folder),
        ca=str(folder / "ca.pem"),
        ca_key=str(folder / "ca-key.pem"),
        server_cert=str(folder / "server.pem"),
        server_key=str(folder / "server-key.pem"),
        client_cert=str(folder / "client.pem"),
        client_key=str(folder / "client-key.pem"),
    )


def ensure_certs(folder: str | Path, *, client_name: str = "chutes-operator") -> CertFiles:
    """The certificates in `folder`, made there when any of them is missing."""
    files = _paths(Path(folder))
    present = [Path(path).exists() for path in (files.ca, files.ca_key, files.server_cert, files.server_key,
                                                 files.client_cert, files.client_key)]
    return files if all(present) else make_certs(folder, client_name=client_name)


def make_certs(folder: str | Path, *, client_name: str = "chutes-operator") -> CertFiles:
    """A new CA with a server and a client certificate in `folder` (made if needed; files overwritten)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    files = _paths(path)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "router-hosts emulator CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.ca_key, ca_key)
    issue_certificate(files.ca, files.ca_key, files.server_cert, files.server_key, "localhost", server=True)
    issue_certificate(files.ca, files.ca_key, files.client_cert, files.client_key, client_name, server=False)
    return files


def issue_certificate(
    ca_path: str,
    ca_key_path: str,
    cert_path: str,
    key_path: str,
    common_name: str,
    *,
    server: bool,
    days: int = VALIDITY.days,
) -> None:
    """A leaf certificate signed by the CA at `ca_path`: for a server (SANs: SERVER_NAMES) or a client, valid for
    `days` from now (a negative number: expired that many days ago, for tests)."""
    ca_cert = x509.load_pem_x509_certificate(Path(ca_path).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(ca_key_path).read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now - datetime.timedelta(minutes=5), not_after - datetime.timedelta(days=1)))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(_server_names()), critical=False)
    _write(cert_path, builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)


def _server_names() -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in SERVER_NAMES:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _write(path: str, data: bytes) -> None:
    Path(path).write_bytes(data)


def _write_key(path: str, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
