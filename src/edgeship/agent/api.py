"""The device side of the wire protocol (docs/protocol.md, "Device API"), over httpx."""

from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from edgeship import __version__
from edgeship.agent.journal import Assignment
from edgeship.errors import AgentError, ServerError, UsageError
from edgeship.pinning import verify_for
from edgeship.store.fsutil import write_atomic
from edgeship.units import parse_size


@dataclass(frozen=True)
class Identity:
    device_id: str
    secret: str
    server_url: str

    @property
    def bearer(self) -> str:
        return f"{self.device_id}.{self.secret}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}


def load_identity(path: Path) -> Identity | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot read the device identity {path}: {exc}",
                         hint="delete it and start the agent with a new --enroll-token") from exc
    return Identity(data["device_id"], data["secret"], data["server_url"])


def save_identity(path: Path, identity: Identity) -> None:
    # 0600 from the first byte: the secret never exists in a file others can read.
    write_atomic(path, json.dumps(identity.__dict__).encode(), mode=0o600)


@dataclass(frozen=True)
class CheckinReply:
    assignment: Assignment | None
    poll_interval_s: float
    repo_path: str
    tags: dict[str, str]


# Facts an operator may set instead of the measured ones (``--fact KEY=VALUE``). Not the
# agent version (the server must know the real one) nor the zone (``--timezone`` sets it).
FACT_KEYS = ("arch", "ram", "accelerator", "os", "hostname")
_FACT_ALIASES = {"ram_bytes": "ram"}
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # aarch64, x86_64, cuda, jetson-orin


def parse_facts(items: Iterable[str]) -> dict[str, str | int]:
    """'arch=aarch64', 'ram=8GiB', ... -> overrides for ``device_facts``; a bad one is a UsageError."""
    facts: dict[str, str | int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = _FACT_ALIASES.get(key.strip(), key.strip()), value.strip()
        if not sep or not value:
            raise UsageError(f"fact {item!r} not understood", hint="write KEY=VALUE, e.g. --fact arch=aarch64 --fact ram=8GiB")
        if key not in FACT_KEYS:
            raise UsageError(f"unknown fact {key!r}", hint=f"known: {', '.join(FACT_KEYS)} (ram_bytes is ram)")
        if key == "ram":
            facts[key] = parse_size(value)
            if not facts[key]:
                raise UsageError(f"fact {item!r}: a device has more than 0 bytes of RAM", hint="e.g. ram=8GiB")
        elif key in ("arch", "accelerator") and not _TOKEN.fullmatch(value):
            raise UsageError(f"fact {item!r}: {key} must be one word of letters, digits and ._+-",
                             hint="as release requirements name it, e.g. arch=aarch64 or accelerator=cuda")
        elif len(value) > 256:
            raise UsageError(f"fact {key} is longer than 256 characters", hint="the server keeps facts short")
        else:
            facts[key] = value
    return facts


def device_facts(timezone: str, overrides: Mapping[str, str | int] | None = None) -> dict[str, Any]:
    """What the device says about itself at enrollment and check-in, and checks releases against."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    facts = {
        "arch": platform.machine(),
        "ram": ram,
        "accelerator": "none",
        "os": platform.platform(terse=True),
        "agent_version": __version__,
        "timezone": timezone,
        "hostname": platform.node(),
        **(overrides or {}),
    }
    return {k: _unicode(v) if isinstance(v, str) else v for k, v in facts.items()}


def _unicode(text: str) -> str:
    """``text`` as valid Unicode: bytes the OS handed over undecoded (a hostname or a ``--fact``
    that is not UTF-8 comes as lone surrogates) become U+FFFD, which the server accepts; it
    refuses lone surrogates, and would refuse every check-in of this device."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class DeviceClient:
    """Enroll, check in and post events; every failure becomes a ServerError or AgentError."""

    def __init__(self, server_url: str, *, ca: str | None = None, timeout: float = 30.0, identity: Identity | None = None) -> None:
        self.server_url = server_url.rstrip("/")
        self.identity = identity
        self._client = httpx.Client(base_url=self.server_url, verify=verify_for(ca), timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None, *, auth: bool = True, **kwargs: Any) -> dict[str, Any]:
        headers = {**(self.identity.headers if auth and self.identity else {}), **kwargs.pop("headers", {})}
        try:
            r = self._client.request(method, path, json=body, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach the update server at {self.server_url} ({exc.__class__.__name__}: {exc})",
                              hint="the agent keeps its queue and retries with backoff; check the network and the URL") from exc
        if r.status_code in (401, 403):
            raise AgentError(f"the server rejected this device's credentials ({r.status_code} on {path})",
                             hint="the device may have been decommissioned; delete identity.json and re-enroll with a new token")
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise ServerError(f"{method} {path} answered {r.status_code}: {message}")
        try:
            data = r.json()
        except ValueError:  # not JSON, or not UTF-8
            raise _malformed(path, "it is not JSON") from None
        if not isinstance(data, dict):
            raise _malformed(path, "it is not a JSON object")
        return data

    def enroll(self, token: str, facts: dict[str, Any], tags: dict[str, str]) -> Identity:
        path = "/v1/devices/enroll"
        data = self._call("POST", path, {"token": token, "facts": facts, "tags": tags}, auth=False)
        device_id, secret = data.get("device_id"), data.get("secret")
        if not (isinstance(device_id, str) and _DEVICE_ID.fullmatch(device_id) and isinstance(secret, str) and secret):
            raise _malformed(path, "it holds no device ID and secret")
        self.identity = Identity(device_id, secret, self.server_url)
        return self.identity

    def _device_path(self, what: str) -> str:
        if self.identity is None:
            raise AgentError("this device is not enrolled", hint="start the agent with --enroll-token")
        return f"/v1/devices/{self.identity.device_id}/{what}"

    def checkin(self, current: dict | None, previous: dict | None, state: str, facts: dict[str, Any] | None) -> CheckinReply:
        body: dict[str, Any] = {"current": current, "previous": previous, "state": state}
        if facts is not None:
            body["facts"] = facts
        path = self._device_path("checkin")
        data = self._call("POST", path, body)
        try:
            a = data.get("assignment")
            poll = float(data.get("poll_interval_s") or 30)
            tags = data.get("tags") or {}
            if not (math.isfinite(poll) and poll > 0 and isinstance(tags, dict)):
                raise ValueError("poll_interval_s or tags")
            return CheckinReply(
                assignment=Assignment.from_json(a) if a else None,
                poll_interval_s=poll,
                repo_path=str(data.get("repo_path") or "/repo/"),
                tags={str(k): str(v) for k, v in tags.items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _malformed(path, f"{exc.__class__.__name__}: {exc}"[:200]) from None

    def federated_task(self) -> dict[str, Any] | None:
        """The federated round this device should train for now (docs/federated.md), or None."""
        path = self._device_path("federated")
        task = self._call("GET", path, None).get("task")
        if task is not None and not (isinstance(task, dict) and all(isinstance(task.get(k), str) for k in ("run", "base_digest", "upload"))):
            raise _malformed(path, "the task is not an object with run, base_digest and upload")
        return task

    def send_update(self, upload_path: str, patch: Path, samples: int, metrics: dict[str, float]) -> dict[str, Any]:
        """PUT a weight update (an edgeship delta); the server answers accepted or rejected."""
        if not upload_path.startswith(self._device_path("federated/")):
            raise _malformed(upload_path, "the upload path is not this device's")
        headers = {"Edgeship-Samples": str(samples), "Edgeship-Metrics": json.dumps(metrics)}
        with patch.open("rb") as f:
            return self._call("PUT", upload_path, None, headers=headers, content=f)

    def post_events(self, events: list[dict[str, Any]]) -> tuple[int, int]:
        path = self._device_path("events")
        data = self._call("POST", path, {"events": events})
        try:
            return int(data.get("accepted", 0)), int(data.get("duplicates", 0))
        except (TypeError, ValueError, OverflowError) as exc:
            raise _malformed(path, f"{exc.__class__.__name__}: {exc}"[:200]) from None


_DEVICE_ID = re.compile(r"[a-z]{3}_[A-Za-z0-9]{8,26}")  # as the server issues them (credentials.new_id)


def _malformed(path: str, why: str) -> ServerError:
    """A server answer the agent cannot use: reported and retried like an unreachable server."""
    return ServerError(f"the answer to POST {path} is malformed: {why}", hint="is the URL an edgeship server of a compatible version?")
