"""Who is connecting: the credentials of a peer's ``Hello`` (and its TLS
client certificate) become a ``Principal``, or the connection is refused.

A server session waits for its ``Authenticator`` before it answers the hello
or reads anything behind it, so nothing an unauthenticated peer sends is ever
applied or stored. Authenticators are async so that a hook may ask elsewhere
(OAuth2 token introspection, a session store); the ones here answer at once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gether.core.keys import check_public_key
from gether.errors import AuthenticationError, UsageError

ANONYMOUS = "anonymous"
JWT_ALGORITHMS = frozenset({"EdDSA", "HS256"})
"""The only JWT algorithms Gether verifies at all: no RSA (padding and key-size
pitfalls), no ECDSA (nonce pitfalls), never ``none``."""
MIN_SECRET_BYTES = 32
"""HS256 secrets at least as long as the hash (RFC 7518, 3.2)."""


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the transport knows of the peer before it says anything."""

    transport: str
    """``"websocket"`` or ``"tcp"``."""
    remote: str
    """host:port of the peer."""
    tls: bool = False
    certificate_subject: str | None = None
    """The verified client certificate's subject (RFC 4514), under mutual TLS."""
    certificate_common_name: str | None = None


def info_from_certificate(
    transport: str, remote: str, tls: bool, peercert: Mapping[str, Any] | None
) -> ConnectionInfo:
    """From ``SSLSocket.getpeercert()``, which is only non-empty for a
    certificate the TLS layer verified against the client CA."""
    if not peercert:
        return ConnectionInfo(transport, remote, tls)
    pairs = [pair for rdn in peercert.get("subject", ()) for pair in rdn]
    names = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU"}
    subject = ",".join(f"{names.get(k, k)}={v}" for k, v in reversed(pairs))
    common = next((v for k, v in pairs if k == "commonName"), None)
    return ConnectionInfo(transport, remote, tls, subject, common)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated peer: who (``subject``), in which ``roles``, and the
    claims its credentials carried (for authorization to come)."""

    subject: str
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class Authenticator(Protocol):
    async def authenticate(self, credentials: str | None, peer: ConnectionInfo) -> Principal:
        """The principal, or ``AuthenticationError``."""
        ...


class OpenAuthenticator:
    """Anyone may connect (the default, for development and trusted networks)."""

    async def authenticate(self, credentials: str | None, peer: ConnectionInfo) -> Principal:
        return Principal(ANONYMOUS)


class CertificateAuthenticator:
    """Mutual TLS: the verified client certificate's common name is the subject."""

    async def authenticate(self, credentials: str | None, peer: ConnectionInfo) -> Principal:
        if peer.certificate_common_name is None:
            raise AuthenticationError("a client certificate is required")
        claims = {"certificate_subject": peer.certificate_subject}
        return Principal(peer.certificate_common_name, claims=MappingProxyType(claims))


def _roles(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(r, str) for r in value):
        return frozenset(value)
    return frozenset()


class JWTAuthenticator:
    """Bearer JWTs. The key decides the one algorithm accepted (an Ed25519
    public key: EdDSA; a secret: HS256), so a token can never choose how it is
    checked (no ``none``, no HS256 "signed" with a public key). ``exp`` and
    ``aud`` are required and checked; ``iss`` when given; ``sub`` names the
    principal, ``roles`` (list or space-separated) its roles."""

    def __init__(
        self,
        key: Ed25519PublicKey | bytes,
        *,
        audience: str,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        if isinstance(key, Ed25519PublicKey):
            check_public_key(key.public_bytes(Encoding.Raw, PublicFormat.Raw))  # no small order
            self.algorithm = "EdDSA"
        elif isinstance(key, bytes):
            if len(key) < MIN_SECRET_BYTES:
                raise UsageError(f"an HS256 secret needs at least {MIN_SECRET_BYTES} bytes")
            self.algorithm = "HS256"
        else:
            raise UsageError("a JWT key is an Ed25519 public key or a secret (bytes)")
        assert self.algorithm in JWT_ALGORITHMS
        if not audience:
            raise UsageError("a JWT audience is required")
        self._key = key
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    async def authenticate(self, credentials: str | None, peer: ConnectionInfo) -> Principal:
        return self.verify(credentials)

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise AuthenticationError("a token is required")
        required = ["exp", "aud", "sub"] + (["iss"] if self.issuer is not None else [])
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": required, "verify_signature": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"token refused: {exc}") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("token refused: sub is not a name")
        return Principal(subject, _roles(claims.get("roles")), MappingProxyType(claims))


class PreSharedKeyAuthenticator:
    """Shared secrets, for small devices that cannot do JWTs: ``{subject:
    secret}``. Every secret is compared, in constant time, whatever matches."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        if not secrets:
            raise UsageError("no pre-shared keys given")
        if any(len(s.encode()) < 16 for s in secrets.values()):
            raise UsageError("a pre-shared key needs at least 16 bytes")
        # digests have one length, so compare_digest leaks nothing about lengths
        self._digests = [(sub, hashlib.sha256(s.encode()).digest()) for sub, s in secrets.items()]

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> PreSharedKeyAuthenticator:
        """``subject:secret`` per line (a bare secret is subject ``psk``);
        blank lines and ``#`` comments are skipped."""
        secrets: dict[str, str] = {}
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                subject, _, secret = line.rpartition(":")
                secrets[subject or "psk"] = secret
        return cls(secrets)

    async def authenticate(self, credentials: str | None, peer: ConnectionInfo) -> Principal:
        given = hashlib.sha256((credentials or "").encode()).digest()
        found: str | None = None
        for subject, digest in self._digests:
            if hmac.compare_digest(given, digest) and found is None:
                found = subject
        if found is None or not credentials:
            raise AuthenticationError("unknown pre-shared key")
        return Principal(found)


Hook = Callable[[str | None, ConnectionInfo], Awaitable[Principal | None]]


class HookAuthenticator:
    """Any async callable: ``hook(credentials, peer)`` returns the principal,
    or None (or raises ``AuthenticationError``) to refuse. For OAuth2 token
    introspection, sessions of a web app, and the like."""

    def __init__(self, hook: Hook) -> None:
        self.hook = hook

    async def authenticate(self, credentials: str | None, peer: ConnectionInfo) -> Principal:
        principal = await self.hook(credentials, peer)
        if principal is None:
            raise AuthenticationError("credentials refused")
        return principal


class AnyOf:
    """The first of several authenticators that accepts (JWTs for users and
    pre-shared keys for devices on one server)."""

    def __init__(self, *authenticators: Authenticator) -> None:
        if not authenticators:
            raise UsageError("AnyOf needs at least one authenticator")
        self.authenticators = authenticators

    async def authenticate(self, credentials: str | None, peer: ConnectionInfo) -> Principal:
        reasons = []
        for authenticator in self.authenticators:
            try:
                return await authenticator.authenticate(credentials, peer)
            except AuthenticationError as exc:
                reasons.append(str(exc))
        raise AuthenticationError("; ".join(reasons))


__all__ = [
    "ANONYMOUS",
    "AnyOf",
    "Authenticator",
    "CertificateAuthenticator",
    "ConnectionInfo",
    "HookAuthenticator",
    "JWTAuthenticator",
    "OpenAuthenticator",
    "PreSharedKeyAuthenticator",
    "Principal",
    "info_from_certificate",
]
