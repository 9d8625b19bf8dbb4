"""The client's TLS files, checked once at start: the CA that signs the server, our certificate and our key.

``load_tls_files`` reads all three and checks, with ``cryptography``, that each is what it should be (PEM
certificates; an unencrypted PEM private key that belongs to the certificate; a certificate not yet expired), so
a wrong mount is reported when the operator starts, naming the file and its role, instead of as TLS handshake
failures later. No message and no ``repr`` ever carries the files' content.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .errors import TlsFilesInvalid

__all__ = ["TlsFiles", "load_tls_files"]


@dataclass(frozen=True)
class TlsFiles:
    """PEM bytes of the three files (the key is kept out of ``repr``) and their paths."""

    ca_path: str
    cert_path: str
    key_path: str
    ca: bytes = field(repr=False)
    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)


def load_tls_files(ca_path: str, cert_path: str, key_path: str) -> TlsFiles:
    """Read and check the CA bundle, the client certificate (chain) and its key; raise TlsFilesInvalid naming the
    first file that is missing, unreadable or wrong."""
    ca = _read("CA", ca_path)
    cert = _read("certificate", cert_path)
    key = _read("key", key_path)
    _certificates("CA", ca_path, ca)
    leaf = _certificates("certificate", cert_path, cert)[0]
    _check_not_expired(cert_path, leaf)
    _check_key(key_path, key, leaf)
    return TlsFiles(ca_path=ca_path, cert_path=cert_path, key_path=key_path, ca=ca, cert=cert, key=key)


def _read(role: str, path: str) -> bytes:
    if not path:
        raise TlsFilesInvalid(f"router-hosts TLS {role} file: no path given", role=role, path=path)
    file = Path(path)
    if not file.exists():
        raise TlsFilesInvalid(f"router-hosts TLS {role} file {path} does not exist", role=role, path=path)
    try:
        data = file.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise TlsFilesInvalid(
            f"router-hosts TLS {role} file {path} cannot be read: {reason}", role=role, path=path
        ) from None
    if not data.strip():
        raise TlsFilesInvalid(f"router-hosts TLS {role} file {path} is empty", role=role, path=path)
    return data


def _certificates(role: str, path: str, data: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise TlsFilesInvalid(
            f"router-hosts TLS {role} file {path} holds no PEM certificate", role=role, path=path
        ) from None
    return certificates


def _check_not_expired(path: str, leaf: x509.Certificate) -> None:
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        expired = leaf.not_valid_after_utc.isoformat()
        raise TlsFilesInvalid(
            f"router-hosts TLS certificate file {path} expired on {expired}", role="certificate", path=path
        )


def _check_key(path: str, data: bytes, leaf: x509.Certificate) -> None:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: gRPC cannot use a key with a passphrase
        raise TlsFilesInvalid(
            f"router-hosts TLS key file {path} is encrypted (gRPC needs an unencrypted key)", role="key", path=path
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsFilesInvalid(
            f"router-hosts TLS key file {path} holds no PEM private key", role="key", path=path
        ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise TlsFilesInvalid(
            f"router-hosts TLS key file {path} does not belong to the certificate (its public key differs)",
            role="key",
            path=path,
        )
