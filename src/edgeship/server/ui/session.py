"""Dashboard sessions and CSRF tokens, signed with a key kept in the data dir.

A session cookie is ``<admin token ID>.<issued at>.<HMAC>``: nothing is stored server-side, so
any instance sharing the data dir accepts it, and revoking the admin token ends its
sessions (the token is looked up on every request). CSRF tokens are HMACs of the session
cookie, so a form is only accepted from a page rendered for the same session; the login
form, which has no session yet, is bound to a random pre-login cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from edgeship.server.auth import require_admin
from edgeship.server.credentials import parse_token
from edgeship.server.models import AdminToken

SESSION_COOKIE = "edgeship_session"
LOGIN_COOKIE = "edgeship_login"
SESSION_TTL_S = 12 * 3600  # an operator logs in again each working day
_KEY_FILE = "ui-session.key"


def load_key(data_dir: Path) -> bytes:
    """The signing key, created once. Written aside and hard-linked into place, so instances
    starting together agree on one key and never read a half-written file."""
    path = data_dir / _KEY_FILE
    if not path.exists():
        tmp = data_dir / f".{_KEY_FILE}.{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another instance won; use its key
        finally:
            tmp.unlink()
    return path.read_bytes()


@dataclass(frozen=True)
class Signer:
    key: bytes

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def login(self, db_session: Session, token: str, now: float) -> str:
        """Check an admin token and return a session cookie value for it (raises ``Unauthorized``)."""
        admin = require_admin(db_session, parse_token(token, "admin token"))
        payload = f"{admin.id}.{int(now)}"
        return f"{payload}.{self._mac('session', payload)}"

    def admin_of(self, db_session: Session, cookie: str | None, now: float) -> AdminToken | None:
        """The admin token behind a valid, unexpired session whose token is not revoked."""
        if not cookie or cookie.count(".") != 2:
            return None
        token_id, issued, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", f"{token_id}.{issued}")):
            return None
        if not issued.isdigit() or now - int(issued) > SESSION_TTL_S:
            return None
        admin = db_session.get(AdminToken, token_id)
        return admin if admin is not None and admin.revoked_at is None else None

    def csrf(self, bound_to: str) -> str:
        return self._mac("csrf", bound_to)

    def csrf_ok(self, bound_to: str | None, presented: str | None) -> bool:
        return bool(bound_to and presented) and hmac.compare_digest(self.csrf(bound_to or ""), presented or "")


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)
