"""``gether serve`` security options: which authenticator and TLS files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from gether.errors import UsageError
from gether.keys import load_public_key
from gether.server.auth import (
    AnyOf,
    Authenticator,
    CertificateAuthenticator,
    JWTAuthenticator,
    PreSharedKeyAuthenticator,
)
from gether.sync.connection import Limits
from gether.transport.tls import ServerTLS, client_context

_LIMITS = Limits()


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc}") from exc


@dataclass(frozen=True)
class SecurityOptions:
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    psk_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    hello_timeout: float = 5.0
    token_file: str | None = None
    tls_ca: str | None = None
    messages_per_second: float = _LIMITS.messages_per_second
    bytes_per_second: float = _LIMITS.bytes_per_second
    max_queued_bytes: int = _LIMITS.max_queued_bytes

    def limits(self) -> Limits:
        """What one connection may cost (the rest at ``Limits``' defaults)."""
        return Limits(
            hello_timeout=self.hello_timeout,
            messages_per_second=self.messages_per_second,
            message_burst=max(1, round(10 * self.messages_per_second)),  # as the defaults
            bytes_per_second=self.bytes_per_second,
            max_queued_bytes=self.max_queued_bytes,
        )

    def authenticator(self) -> Authenticator | None:
        """None: open to anyone (no credentials and no client CA given)."""
        found: list[Authenticator] = []
        if self.jwt_secret or self.jwt_public_key:
            if not self.jwt_audience:
                raise UsageError("--jwt-audience is required with --jwt-secret/--jwt-public-key")
            if self.jwt_secret:
                secret = _read(self.jwt_secret, "JWT secret").strip().encode()
                found.append(
                    JWTAuthenticator(secret, audience=self.jwt_audience, issuer=self.jwt_issuer)
                )
            if self.jwt_public_key:
                found.append(
                    JWTAuthenticator(
                        load_public_key(self.jwt_public_key),
                        audience=self.jwt_audience,
                        issuer=self.jwt_issuer,
                    )
                )
        elif self.jwt_audience or self.jwt_issuer:
            raise UsageError("--jwt-audience/--jwt-issuer need --jwt-secret or --jwt-public-key")
        if self.psk_file:
            lines = _read(self.psk_file, "pre-shared key").splitlines()
            found.append(PreSharedKeyAuthenticator.from_lines(lines))
        if not found and self.tls_client_ca:
            found.append(CertificateAuthenticator())
        if not found:
            return None
        return found[0] if len(found) == 1 else AnyOf(*found)

    def tls(self) -> ServerTLS | None:
        if not (self.tls_cert or self.tls_key):
            if self.tls_client_ca:
                raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
            return None
        if not (self.tls_cert and self.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        client_ca = Path(self.tls_client_ca) if self.tls_client_ca else None
        return ServerTLS(Path(self.tls_cert), Path(self.tls_key), client_ca)

    def token(self) -> str | None:
        """What a peer sends when it dials."""
        return _read(self.token_file, "token").strip() if self.token_file else None

    def dial_context(self) -> ssl.SSLContext | None:
        """What a peer trusts when it dials (and presents, with a certificate)."""
        if self.tls_ca is None:
            return None
        if self.tls_cert and self.tls_key:
            return client_context(self.tls_ca, self.tls_cert, self.tls_key)
        return client_context(self.tls_ca)
