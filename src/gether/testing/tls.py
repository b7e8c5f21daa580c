"""A throwaway certificate authority for TLS tests: made at test time with
``cryptography.x509`` (no key or certificate is ever checked in)::

    ca = CertificateAuthority(tmp_path)
    server = await start_server(url, tls=ca.server_tls(client_ca=True), ...)
    ssl_context = ca.client_context("alice")     # trusts the CA, presents CN=alice

The server certificate names ``127.0.0.1``, ``::1`` and ``localhost``.
Keys are ECDSA P-256 (quick to make); files are PEM in ``directory``.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gether.transport.tls import ServerTLS, client_context

_DAY = datetime.timedelta(days=1)
_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True,
    crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gether tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class CertificateAuthority:
    def __init__(self, directory: str | Path, name: str = "Gether test CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.directory / "ca.pem"
        self.cert_path.write_bytes(self.certificate.public_bytes(Encoding.PEM))
        self.server_cert, self.server_key = self.issue("localhost", server=True)

    def issue(self, common_name: str, *, server: bool = False) -> tuple[Path, Path]:
        """A certificate and key signed by this CA (for a server: valid for
        the loopback addresses and ``localhost``)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        stem = self.directory / common_name
        cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_path.write_bytes(certificate.public_bytes(Encoding.PEM))
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        return cert_path, key_path

    def server_tls(self, client_ca: bool = False) -> ServerTLS:
        """The server's files; with ``client_ca``, clients need a certificate of this CA."""
        return ServerTLS(self.server_cert, self.server_key, self.cert_path if client_ca else None)

    def client_context(self, common_name: str | None = None) -> ssl.SSLContext:
        """Trusts this CA; with a name, presents a client certificate for it."""
        if common_name is None:
            return client_context(self.cert_path)
        cert, key = self.issue(common_name)
        return client_context(self.cert_path, cert, key)


__all__ = ["CertificateAuthority"]
