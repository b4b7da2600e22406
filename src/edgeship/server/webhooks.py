"""Operator webhooks: rollout state changes POSTed as JSON, signed with a shared secret.

Deliveries are an outbox: the transaction that pauses, aborts or completes a rollout also
writes one ``webhook_deliveries`` row per webhook, so a crash can delay a notification but
never lose it. ``deliver_due`` sends what is due, retrying with exponential backoff.

Receivers check ``X-Edgeship-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body
under the secret (``signature`` below), and may drop repeats by ``X-Edgeship-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from edgeship.errors import NotFoundError, UsageError
from edgeship.server import rollout_schemas as schemas
from edgeship.server.credentials import new_id
from edgeship.server.db import Database
from edgeship.server.models import Webhook, WebhookDelivery

log = logging.getLogger("edgeship.server.webhooks")

SIGNATURE_HEADER = "x-edgeship-signature"
MAX_ATTEMPTS = 12  # with the backoff below, about a day of trying before giving up
MAX_DELAY_S = 3600.0
LEASE_S = 60.0  # a claimed delivery is not sent again by another instance for this long


def signature(secret: str, body: bytes) -> str:
    """The header value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def add(session: Session, req: schemas.WebhookCreate) -> schemas.WebhookOut:
    parts = urlsplit(req.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"webhook URL {req.url[:200]!r} is not an http(s) URL", hint="e.g. https://hooks.example.com/edgeship")
    hook = Webhook(id=new_id("whk"), url=req.url, secret=req.secret, created_at=datetime.now(timezone.utc))
    session.add(hook)
    return _out(hook)


def list_hooks(session: Session) -> list[schemas.WebhookOut]:
    return [_out(h) for h in session.scalars(select(Webhook).order_by(Webhook.created_at))]


def remove(session: Session, hook_id: str) -> schemas.WebhookOut:
    hook = session.get(Webhook, hook_id)
    if hook is None:
        raise NotFoundError(f"no webhook {hook_id[:40]}", hint="`edgeship webhook list` shows their IDs")
    out = _out(hook)
    session.query(WebhookDelivery).filter(WebhookDelivery.webhook_id == hook_id).delete()
    session.delete(hook)
    return out


def _out(hook: Webhook) -> schemas.WebhookOut:
    return schemas.WebhookOut(id=hook.id, url=hook.url, created_at=hook.created_at)


def enqueue(session: Session, payload: dict[str, Any]) -> int:
    """One delivery of ``payload`` per webhook, in the caller's transaction."""
    now = datetime.now(timezone.utc)
    hooks = session.scalars(select(Webhook.id)).all()
    for hook_id in hooks:
        session.add(WebhookDelivery(webhook_id=hook_id, payload=payload, attempts=0, next_attempt_at=now, last_error=""))
    return len(hooks)


def deliver_due(db: Database, client: httpx.Client, retry_s: float) -> int:
    """Send every due delivery once; returns how many were accepted (2xx)."""
    now = datetime.now(timezone.utc)
    with db.read() as session:
        due = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.delivered_at.is_(None), WebhookDelivery.attempts < MAX_ATTEMPTS, WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.id)
            .limit(100)
        ).all()
    sent = 0
    for delivery_id, seen in due:
        claimed = _claim(db, delivery_id, seen, now)
        if claimed is None:
            continue  # another instance took it
        error = _post(client, delivery_id, *claimed)
        with db.write() as session:
            row = session.get(WebhookDelivery, delivery_id)
            if row is None:
                continue  # the webhook was removed meanwhile
            row.attempts += 1
            if error is None:
                row.delivered_at = datetime.now(timezone.utc)
                row.last_error = ""
                sent += 1
            else:
                row.last_error = error[:500]
                delay = min(MAX_DELAY_S, retry_s * 2 ** (row.attempts - 1))
                row.next_attempt_at = datetime.now(timezone.utc) + timedelta(seconds=delay)
                log.warning("webhook delivery %d failed (attempt %d): %s", delivery_id, row.attempts, error)
    return sent


def _claim(db: Database, delivery_id: int, seen: datetime, now: datetime) -> tuple[str, str, dict[str, Any]] | None:
    """Lease a delivery (a conditional UPDATE: only one instance wins); its URL, secret and payload."""
    with db.write() as session:
        won = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.next_attempt_at == seen, WebhookDelivery.delivered_at.is_(None))
            .values(next_attempt_at=now + timedelta(seconds=LEASE_S))
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            return None
        row = session.execute(
            select(Webhook.url, Webhook.secret, WebhookDelivery.payload)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
        ).one()
        return row.url, row.secret, row.payload


def _post(client: httpx.Client, delivery_id: int, url: str, secret: str, payload: dict[str, Any]) -> str | None:
    """POST one delivery; None on a 2xx answer, else what went wrong."""
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: signature(secret, body),
        "x-edgeship-delivery": str(delivery_id),
        "x-edgeship-event": str(payload.get("type", "")),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{exc.__class__.__name__}: {exc}"
    if response.is_success:
        return None
    return f"answered {response.status_code}"
