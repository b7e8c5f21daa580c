"""TLS contexts for servers (``wss://``, ``tls://``) and the clients that dial
them, with mutual TLS as an option: a server given a client CA requires every
client to present a certificate that CA signed."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from gether.errors import UsageError


def _secure(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """A server's certificate chain and key (PEM files), and optionally the CA
    its clients' certificates must be signed by (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def context(self) -> ssl.SSLContext:
        context = _secure(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        try:
            context.load_cert_chain(self.cert, self.key)
            if self.client_ca is not None:
                context.load_verify_locations(self.client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the server's TLS files: {exc}") from exc
        return context


def client_context(
    ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> ssl.SSLContext:
    """What a client trusts (``ca``, else the system's roots) and, for mutual
    TLS, the certificate it presents. Host names are checked."""
    try:
        context = _secure(ssl.create_default_context(cafile=ca))
        if cert is not None:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the client's TLS files: {exc}") from exc
    return context
