"""``OperatorClient``: the operator API (docs/protocol.md) over httpx, errors mapped to edgeship's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from edgeship.errors import (
    ConflictError,
    EdgeshipError,
    NotFoundError,
    ServerError,
    UsageError,
)
from edgeship.pinning import verify_for
from edgeship.store.digest import Digest
from edgeship.store.fsutil import atomic_writer

UPLOAD_CHUNK = 8 << 20  # bytes per PATCH: an interrupted push re-sends at most this much

_BY_STATUS: dict[int, type[EdgeshipError]] = {404: NotFoundError, 409: ConflictError, 413: UsageError, 422: UsageError}


class OperatorClient:
    def __init__(self, url: str, token: str, *, ca: str | None = None, timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        if not url:
            raise UsageError("no server URL", hint="pass --server URL, set EDGESHIP_SERVER, or run `edgeship server init --workspace`")
        if not token:
            raise UsageError("no admin token", hint="pass --token, set EDGESHIP_ADMIN_TOKEN, or run `edgeship server init --workspace`")
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"authorization": f"Bearer {token}"},
            verify=verify_for(ca),
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach {self.url}: {exc}", hint="is the server running, and is the URL (http/https, port) right?") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    # -- fleet ----------------------------------------------------------------------------

    def create_enroll_token(self, tags: dict[str, str], uses: int | None, expires_s: int | None) -> dict:
        return self._json("POST", "/v1/admin/enroll-tokens", json={"tags": tags, "uses": uses, "expires_s": expires_s})

    def revoke_enroll_token(self, token_id: str) -> dict:
        return self._json("DELETE", f"/v1/admin/enroll-tokens/{token_id}")

    def devices(self, tag: str | None = None, include_decommissioned: bool = False) -> Iterator[dict]:
        after = ""
        while True:
            params: dict[str, Any] = {"after": after, "limit": 1000, "all": include_decommissioned}
            if tag:
                params["tag"] = tag
            page = self._json("GET", "/v1/admin/devices", params=params)
            yield from page
            if len(page) < 1000:
                return
            after = page[-1]["id"]

    def device(self, device_id: str) -> dict:
        return self._json("GET", f"/v1/admin/devices/{device_id}")

    def decommission(self, device_id: str) -> dict:
        return self._json("DELETE", f"/v1/admin/devices/{device_id}")

    def assign(self, release: str, tag: str | None, device_id: str | None, rollback: bool = False) -> dict:
        return self._json("POST", "/v1/admin/assignments", json={"release": release, "tag": tag, "device_id": device_id, "rollback": rollback})

    def assignments(self) -> list[dict]:
        return self._json("GET", "/v1/admin/assignments")

    def events(self, device_id: str | None = None, after: int = 0, limit: int = 100) -> dict:
        params: dict[str, Any] = {"after": after, "limit": limit}
        if device_id:
            params["device_id"] = device_id
        return self._json("GET", "/v1/admin/events", params=params)

    def create_admin_token(self, name: str) -> dict:
        return self._json("POST", "/v1/admin/tokens", json={"name": name})

    # -- rollouts, experiments, webhooks --------------------------------------------------

    def start_rollout(self, **options: Any) -> dict:
        """Options as in ``RolloutCreate`` (docs/rollouts.md): release, target, device_ids, stages, …"""
        return self._json("POST", "/v1/admin/rollouts", json=options)

    def rollouts(self, include_finished: bool = True) -> list[dict]:
        return self._json("GET", "/v1/admin/rollouts", params={"all": include_finished})

    def rollout(self, rollout_id: str) -> dict:
        return self._json("GET", f"/v1/admin/rollouts/{rollout_id}")

    def rollout_action(self, rollout_id: str, action: str, reason: str | None = None, rollback: bool = True) -> dict:
        return self._json("POST", f"/v1/admin/rollouts/{rollout_id}/{action}", json={"reason": reason, "rollback": rollback})

    # -- federated learning (docs/federated.md) ----------------------------------------------

    def start_federated(self, **options: Any) -> dict:
        """Options as in the server's ``RunCreate``: release, target, rounds, min_participants, …"""
        return self._json("POST", "/v1/admin/federated", json=options)

    def federated_runs(self) -> list[dict]:
        return self._json("GET", "/v1/admin/federated")

    def federated_run(self, run_id: str) -> dict:
        return self._json("GET", f"/v1/admin/federated/{run_id}")

    def pull_candidate(self, run_id: str, round_no: int | None, dest: Path) -> int:
        """Download a run's candidate model to ``dest`` (whole or not at all); returns its round."""
        params = {"round": round_no} if round_no is not None else {}
        try:
            with self._http.stream("GET", f"/v1/admin/federated/{run_id}/candidate", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                with atomic_writer(dest) as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                return int(response.headers["edgeship-round"])
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach {self.url}: {exc}", hint="is the server running, and is the URL (http/https, port) right?") from exc

    def start_experiment(self, release_a: str, release_b: str, split: float, target: str | None, duration: str) -> dict:
        body = {"release_a": release_a, "release_b": release_b, "split": split, "target": target, "duration": duration}
        return self._json("POST", "/v1/admin/experiments", json=body)

    def experiments(self) -> list[dict]:
        return self._json("GET", "/v1/admin/experiments")

    def experiment(self, experiment_id: str) -> dict:
        return self._json("GET", f"/v1/admin/experiments/{experiment_id}")

    def add_webhook(self, url: str, secret: str) -> dict:
        return self._json("POST", "/v1/admin/webhooks", json={"url": url, "secret": secret})

    def webhooks(self) -> list[dict]:
        return self._json("GET", "/v1/admin/webhooks")

    def remove_webhook(self, webhook_id: str) -> dict:
        return self._json("DELETE", f"/v1/admin/webhooks/{webhook_id}")

    def mqtt_accounts(self) -> Iterator[dict]:
        after = ""
        while True:
            page = self._json("GET", "/v1/admin/mqtt/accounts", params={"after": after, "limit": 5000})
            yield from page
            if len(page) < 5000:
                return
            after = page[-1]["device_id"]

    # -- publishing -----------------------------------------------------------------------

    def repository(self) -> dict:
        return self._json("GET", "/v1/admin/repository")

    def upload_offset(self, digest: Digest) -> tuple[int, bool]:
        r = self._send("HEAD", f"/v1/admin/uploads/sha256/{digest.hex}")
        return int(r.headers["upload-offset"]), r.headers.get("upload-complete") == "1"

    def upload(self, path: Path, digest: Digest, size: int, progress: Callable[[int], None] | None = None) -> bool:
        """Upload a file by digest, resuming a cut-off upload; False if the server had it already."""
        offset, complete = self.upload_offset(digest)
        if complete:
            return False
        if offset > size:
            offset = 0  # a stale partial from a different file claiming this digest: restart
        with open(path, "rb") as f:
            while True:
                f.seek(offset)
                chunk = f.read(UPLOAD_CHUNK)
                headers = {"upload-offset": str(offset), "upload-length": str(size), "content-type": "application/octet-stream"}
                state = self._json("PATCH", f"/v1/admin/uploads/sha256/{digest.hex}", content=chunk, headers=headers)
                offset = state["offset"]
                if progress:
                    progress(offset)
                if state["complete"]:
                    return True
                if not chunk:
                    raise ServerError(f"server did not accept the end of {digest}", hint="retry the push")

    def publish(self, targets: dict, roots: list[dict], bins: dict[str, dict] | None = None) -> dict:
        return self._json("POST", "/v1/admin/metadata", json={"targets": targets, "roots": roots, "bins": bins or {}})


def _error(response: httpx.Response) -> EdgeshipError:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300] or response.reason_phrase
    if response.status_code in (401, 403):
        return ServerError(f"server refused: {message}", hint="check the admin token (--token, EDGESHIP_ADMIN_TOKEN or the workspace's edgeship.toml)")
    cls = _BY_STATUS.get(response.status_code, ServerError)
    return cls(f"server answered {response.status_code}: {message}")
