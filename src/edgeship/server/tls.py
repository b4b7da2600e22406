"""A private CA and a server certificate for HTTPS (clients pin the CA, not a public one).

    <data-dir>/tls/ca.pem         CA certificate: give it to devices and operators
    <data-dir>/tls/ca-key.pem     CA private key (0600): only needed to issue a new server cert
    <data-dir>/tls/server.pem     server certificate (chain: server, CA)
    <data-dir>/tls/server-key.pem server private key (0600)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgeship.errors import ConflictError, UsageError
from edgeship.store.fsutil import write_atomic


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def under(cls, data_dir: Path) -> TlsFiles:
        d = data_dir / "tls"
        return cls(d / "ca.pem", d / "ca-key.pem", d / "server.pem", d / "server-key.pem")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeship"), x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def init_certs(data_dir: Path, names: list[str], days: int = 825, force: bool = False) -> TlsFiles:
    """Create the CA and a server certificate valid for ``names`` (DNS names or IP addresses)."""
    files = TlsFiles.under(data_dir)
    if files.ca.exists() and not force:
        raise ConflictError(f"{files.ca} exists", hint="pass --force to replace the CA (every client must then pin the new one)")
    if not names:
        raise UsageError("the certificate needs at least one --name", hint="e.g. --name updates.example.com --name 10.0.0.5")
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("edgeship private CA"))
        .issuer_name(_name("edgeship private CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    write_atomic(files.ca_key, _pem_key(ca_key), mode=0o600)
    write_atomic(files.key, _pem_key(key), mode=0o600)
    write_atomic(files.cert, cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    write_atomic(files.ca, ca_cert.public_bytes(pem))
    return files
