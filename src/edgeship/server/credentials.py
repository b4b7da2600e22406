"""Bearer credentials: ``<id>.<secret>``, of which the server keeps only sha256(secret).

The secrets are 256 random bits, so a fast hash is enough: there is nothing to brute-force
that a slow password hash would protect, and check-ins must stay cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from edgeship.server.problems import Unauthorized

_ID_RE = re.compile(r"^[a-z]{3}_[A-Za-z0-9]{8,26}$")


@dataclass(frozen=True)
class Credential:
    id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{self.id}.{self.secret}"

    @property
    def secret_hash(self) -> str:
        return hash_secret(self.secret)


def new_id(prefix: str) -> str:
    """``dev_…``, ``enr_…``, ``adm_…``: readable in logs, 120 random bits."""
    return f"{prefix}_{secrets.token_hex(10)}"


def new_credential(prefix: str) -> Credential:
    return Credential(new_id(prefix), secrets.token_urlsafe(32))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_token(token: str, what: str) -> Credential:
    ident, sep, secret = token.strip().partition(".")
    if not sep or not secret or not _ID_RE.match(ident):
        raise Unauthorized(f"malformed {what}", hint=f"a {what} looks like <id>.<secret>, exactly as it was issued")
    return Credential(ident, secret)


def bearer(header: str | None, what: str) -> Credential:
    """The credential in an ``Authorization: Bearer …`` header."""
    if not header:
        raise Unauthorized(f"no {what} given", hint="send 'Authorization: Bearer <token>'")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("Authorization header is not a bearer token", hint="send 'Authorization: Bearer <token>'")
    return parse_token(value, what)
