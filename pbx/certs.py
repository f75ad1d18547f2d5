"""TLS material and server TLS options for SIP over TLS and HTTPS.

At first start, when no certificate is configured, a self-signed certificate and key are
generated with the ``cryptography`` library into ``DATA/tls/`` (key mode 0600). A configured
pair is loaded as is. :func:`tls_options` is the one server TLS policy of both listeners:
TLS 1.2 or newer, and the whole chain of the certificate file served. Imports nothing from pbx.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    certificate: Path
    private_key: Path


def _subject_names(bind: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    hostname = socket.gethostname()  # local name only; no DNS lookup
    if hostname and hostname != "localhost":
        names.append(x509.DNSName(hostname))
    if bind and bind not in ("0.0.0.0", "::", "127.0.0.1"):
        names.append(x509.IPAddress(ipaddress.ip_address(bind)))
    return names


def generate_self_signed(directory: Path, bind: str = "") -> TlsFiles:
    """Write a new self-signed EC P-256 certificate valid for ten years."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname() or "pbx")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(_subject_names(bind)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp_key = files.private_key.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    os.replace(tmp_key, files.private_key)
    tmp_cert = files.certificate.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_cert, files.certificate)
    log.info("generated a self-signed TLS certificate in %s", directory)
    return files


def ensure_tls_files(
    data_dir: Path, certificate: str, private_key: str, bind: str = ""
) -> TlsFiles:
    """Return the configured pair, or the generated one (created at first start)."""
    if certificate or private_key:
        files = TlsFiles(Path(certificate), Path(private_key))
        for path in (files.certificate, files.private_key):
            if not path.is_file():
                raise FileNotFoundError(f"TLS file {path} does not exist")
        return files
    directory = data_dir / "tls"
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    if files.certificate.is_file() and files.private_key.is_file():
        return files
    return generate_self_signed(directory, bind)


def tls_options(files: TlsFiles) -> ssl.CertificateOptions:
    """Server TLS options: TLS 1.2 or newer, the key, and the PEM certificate file's leaf plus
    every further certificate in it (intermediates) sent as the chain."""
    cert_pem = files.certificate.read_bytes()
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", cert_pem, re.DOTALL
    )
    if not blocks:
        raise ValueError(f"{files.certificate}: no PEM certificate")
    leaf = ssl.PrivateCertificate.loadPEM(blocks[0] + b"\n" + files.private_key.read_bytes())
    chain = [ssl.Certificate.loadPEM(b).original for b in blocks[1:]]
    return ssl.CertificateOptions(
        privateKey=leaf.privateKey.original,
        certificate=leaf.original,
        extraCertChain=chain,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
