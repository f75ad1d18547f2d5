"""The TLS listeners of the real pbx (SIP over TLS and the HTTPS web UI) share one policy.

TLS 1.2 is the floor (a TLS 1.1 client is refused, 1.2 and 1.3 work) and a certificate file
holding the leaf and an intermediate is served as a chain: a client that trusts only the root
verifies the server. The chain (root CA -> intermediate CA -> leaf for 127.0.0.1) is made
here with ``cryptography``; everything runs on 127.0.0.1. The server runs with an OpenSSL
configuration that allows TLS 1.0 and weak signatures (as older systems' defaults do), so the
floor checked is pbx's own, not the host's. Imports nothing from ``pbx``.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .harness.pbx_server import PbxServer

Key = ec.EllipticCurvePrivateKey


def _certificate(
    name: str, key: Key, issuer: tuple[x509.Name, Key] | None, *, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        address = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([address]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_chain(directory: Path) -> tuple[Path, Path, Path]:
    """(root CA file, leaf + intermediate file, leaf key file)."""
    directory.mkdir(parents=True, exist_ok=True)
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _certificate("test root", root_key, None, ca=True)
    mid = _certificate("test intermediate", mid_key, (root.subject, root_key), ca=True)
    leaf = _certificate("127.0.0.1", leaf_key, (mid.subject, mid_key), ca=False)
    paths = directory / "root.pem", directory / "chain.pem", directory / "key.pem"
    paths[0].write_bytes(_pem(root))
    paths[1].write_bytes(_pem(leaf) + _pem(mid))
    paths[2].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


PERMISSIVE_OPENSSL_CONF = """openssl_conf = openssl_init

[openssl_init]
ssl_conf = ssl_sect

[ssl_sect]
system_default = system_default_sect

[system_default_sect]
MinProtocol = TLSv1
CipherString = DEFAULT:@SECLEVEL=0
"""


@pytest.fixture
def tls_pbx(pbx_factory: Callable[..., PbxServer], tmp_path: Path) -> tuple[PbxServer, Path]:
    root, chain, key = _write_chain(tmp_path / "certs")
    conf = tmp_path / "openssl.cnf"
    conf.write_text(PERMISSIVE_OPENSSL_CONF, encoding="utf-8")
    toml = f'[sip]\ntls_certificate = "{chain}"\ntls_private_key = "{key}"\n'
    return pbx_factory(site_toml=toml, env={"OPENSSL_CONF": str(conf)}), root


def _handshake(port: int, context: ssl.SSLContext) -> str:
    """The TLS version negotiated with 127.0.0.1:port (raises ssl.SSLError when refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())


def _client(version: ssl.TLSVersion, cafile: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = context.maximum_version = version
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=str(cafile))
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.1
    return context


@pytest.mark.parametrize("listener", ["sip", "https"])
def test_tls_1_1_is_refused_and_1_2_and_1_3_are_served_with_the_chain(
    tls_pbx: tuple[PbxServer, Path], listener: str
) -> None:
    pbx, root = tls_pbx
    port = pbx.tls_port if listener == "sip" else pbx.http_port
    with pytest.raises(ssl.SSLError):
        _handshake(port, _client(ssl.TLSVersion.TLSv1_1))
    # trusting only the root: verification needs the intermediate from the server
    assert _handshake(port, _client(ssl.TLSVersion.TLSv1_2, root)) == "TLSv1.2"
    assert _handshake(port, _client(ssl.TLSVersion.TLSv1_3, root)) == "TLSv1.3"
