"""TLS for the server: a context from PEM files, and a self-signed certificate for a LAN server."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context from PEM files; a missing or mismatched pair raises ValueError."""
    for path in (cert, key):
        if not Path(path).is_file():
            raise ValueError(f"TLS file {path} does not exist")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise ValueError(f"TLS certificate {cert} and key {key} do not load as a pair: {exc.reason or exc}") from None
    return ctx


def self_signed_certificate(directory: Path, names: list[str], days: int = 825) -> tuple[Path, Path]:
    """``directory/cert.pem`` and ``key.pem`` for a LAN server, made once and reused.

    The certificate is its own CA (basicConstraints CA:true), so clients can pin it as their
    trust root (``SSL_CERT_FILE``, or ``ssl.create_default_context(cafile=...)``). Subject
    alternative names: ``names`` plus localhost and 127.0.0.1.
    """
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys([*names, "localhost", "127.0.0.1"]):
        if not name or name in ("0.0.0.0", "::"):
            continue
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names and names[0] not in ("0.0.0.0", "::") else "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
