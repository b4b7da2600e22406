"""Credentials taken from request headers, before any body is read or validated."""

from __future__ import annotations

import base64
import binascii

import anyio
from fastapi import Depends, Header, Request

from edgeship.server.auth import require_admin, require_device
from edgeship.server.context import ServerContext, context
from edgeship.server.credentials import Credential, bearer, parse_token
from edgeship.errors import UsageError
from edgeship.server.problems import Unauthorized

# Dependencies that do no I/O are async: FastAPI runs sync ones in the thread pool, a hop
# that costs more than the work itself on every check-in.


async def credential(authorization: str | None = Header(None)) -> Credential:
    return bearer(authorization, "credential")


async def repo_credential(authorization: str | None = Header(None)) -> Credential:
    """Bearer, or Basic ``<id>:<secret>`` so that a repository URL can carry its credential
    (``https://dev_…:secret@host/repo``) for TUF clients that cannot set headers."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            ident, _, secret = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthorized("malformed Basic credential") from exc
        return parse_token(f"{ident}.{secret}", "credential")
    return bearer(authorization, "credential")


async def vouch_device(request: Request, cred: Credential) -> None:
    """Unauthorized (or Forbidden) unless ``cred`` is the device named in the URL. Asked of a
    device route whose request is refused, before the caller hears why (routes/body.py)."""
    ctx: ServerContext = request.app.state.ctx
    device_id = request.path_params["device_id"]

    def check() -> None:
        with ctx.db.read() as session:
            require_device(session, cred, device_id)

    await anyio.to_thread.run_sync(check)


def admin(cred: Credential = Depends(credential), ctx: ServerContext = Depends(context)) -> None:
    with ctx.db.read() as session:
        require_admin(session, cred)


async def text_url(request: Request) -> None:
    """Refuse a NUL character in the path or query (every route): PostgreSQL text cannot hold
    one, so an ID carrying it would fail in the database instead of being not found."""
    if "\x00" in request.scope["path"] or b"%00" in request.scope["query_string"]:
        raise UsageError("the URL contains a NUL (%00) character", hint="IDs, tags and paths are plain text")
