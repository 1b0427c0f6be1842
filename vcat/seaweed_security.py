"""The secrets that keep a local SeaweedFS server's other ports closed: ``security.toml``.

``write_security(folder)`` writes, each file mode 600 from its creation:

- ``security.toml``: four JWT signing keys (volume writes, volume reads, filer writes,
  filer reads) and the paths of the gRPC TLS files for every component;
- ``tls/ca.crt``, ``tls/node.crt``, ``tls/node.key``: a certificate authority and one
  certificate that every component presents and requires (mutual TLS). The authority's
  private key only signs that certificate and is never written, so nobody can make another
  certificate it accepts.

Everything is new at every call: the server is started with the files of that call, and an
earlier token or certificate is worthless afterwards.
"""

from __future__ import annotations

import datetime
import json
import secrets
from pathlib import Path

from vcat.secret_files import private_dir, write_private

SECURITY_FILE = "security.toml"
TLS_DIR = "tls"
#: ``weed``'s components that take a ``[grpc.<name>]`` section of ``security.toml``.
GRPC_COMPONENTS = (
    "master",
    "volume",
    "filer",
    "s3",
    "admin",
    "worker",
    "client",
    "msg_broker",
    "msg_agent",
)
_VALID = datetime.timedelta(days=3650)


def write_security(folder: Path) -> Path:
    """Write fresh keys and certificates into ``folder``; the path of ``security.toml``."""
    tls = folder / TLS_DIR
    private_dir(tls)
    ca_pem, cert_pem, key_pem = _certificates()
    write_private(tls / "ca.crt", ca_pem)
    write_private(tls / "node.crt", cert_pem)
    write_private(tls / "node.key", key_pem)
    keys = {name: secrets.token_urlsafe(32) for name in ("write", "read", "filer", "filer_read")}
    lines = [
        "# Written by vcat at every start of this server; replaced at the next.",
        "[jwt.signing]",
        f"key = {_quote(keys['write'])}",
        "[jwt.signing.read]",
        f"key = {_quote(keys['read'])}",
        "[jwt.filer_signing]",
        f"key = {_quote(keys['filer'])}",
        "[jwt.filer_signing.read]",
        f"key = {_quote(keys['filer_read'])}",
        "[access]",
        "ui = false",
        "[filer.expose_directory_metadata]",
        "enabled = false",
        "[grpc]",
        f"ca = {_quote(str(tls / 'ca.crt'))}",
    ]
    for component in GRPC_COMPONENTS:
        lines += [
            f"[grpc.{component}]",
            f"cert = {_quote(str(tls / 'node.crt'))}",
            f"key = {_quote(str(tls / 'node.key'))}",
        ]
    target = folder / SECURITY_FILE
    write_private(target, "\n".join(lines) + "\n")
    return target


def client_certificate(folder: Path) -> tuple[Path, Path]:
    """The certificate and key that the server's gRPC ports accept (for checks)."""
    return folder / TLS_DIR / "node.crt", folder / TLS_DIR / "node.key"


def _quote(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(value)


def _certificates() -> tuple[bytes, bytes, bytes]:
    """A CA certificate, a certificate it signed for 127.0.0.1, and that one's key (PEM)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcat local S3 server CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcat")]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        ca_cert.public_bytes(serialization.Encoding.PEM),
        node_cert.public_bytes(serialization.Encoding.PEM),
        node_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
