"""What the agent calls: swap the runtime to a release and run that release's health suite.

    client = RuntimeClient(data_dir)                    # http://127.0.0.1:8080, token from the data dir
    client.swap(release_id)                             # after switching `current`; raises if it cannot load
    verdict = client.trial(manifest, release_id)        # the suite, measured by the runtime, judged here
    if not verdict.ok: roll back, then client.swap(previous_id)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from edgeship.errors import RuntimeBackendError
from edgeship.release.manifest import Manifest
from edgeship.runtime.config import TOKEN_FILE, read_token
from edgeship.runtime.health import HealthReport, HealthVerdict, evaluate
from edgeship.runtime.swap import SwapOutcome

DEFAULT_URL = "http://127.0.0.1:8080"


class RuntimeClient:
    def __init__(self, data_dir: Path, url: str = DEFAULT_URL, *, timeout_s: float = 300.0) -> None:
        # Generous timeout: a swap loads and warms up a model, a suite runs inference.
        self.url = url.rstrip("/")
        self._token_path = Path(data_dir) / TOKEN_FILE
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _admin(self, path: str, body: dict[str, object]) -> dict[str, object]:
        # Read the token on every call: the runtime creates it at its first start, maybe after us.
        token = read_token(self._token_path)
        if token is None:
            raise RuntimeBackendError(f"no runtime token at {self._token_path}",
                                      hint="start `edgeship runtime serve` with the same --data-dir first")
        try:
            reply = self._http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise RuntimeBackendError(f"cannot reach the runtime at {self.url}: {exc}",
                                      hint="check that `edgeship runtime serve` is running") from exc
        if reply.status_code != 200:
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text[:400]
            raise RuntimeBackendError(f"runtime {path} failed ({reply.status_code}): {message}")
        return reply.json()

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def swap(self, release_id: str | None = None, cpu: Mapping[str, str] | None = None) -> SwapOutcome:
        """Load ``release_id`` (None: what `current` points at) and serve it; raises if that failed.

        ``cpu``: models to run on the CPU -> why; {}: every model as planned; None: as last asked.
        """
        body = {"release_id": release_id, "cpu": None if cpu is None else dict(cpu)}
        return SwapOutcome.model_validate(self._admin("/admin/swap", body))

    def adapters(self, default: str) -> dict[str, object]:
        """Set the adapters requests naming none run with ("NAME[*SCALE]+...", "": none); the base stays loaded."""
        return self._admin("/admin/adapters", {"default": default})

    def health(self) -> HealthReport:
        """Run the serving release's health suite and return what was measured."""
        return HealthReport.model_validate(self._admin("/admin/health", {}))

    def trial(self, manifest: Manifest, release_id: str) -> HealthVerdict:
        """The suite of ``manifest`` judged on what the runtime measured; a runtime that cannot run it fails."""
        try:
            report = self.health()
        except RuntimeBackendError as exc:
            return HealthVerdict(ok=False, failures=[exc.message])
        return evaluate(manifest.health, report, release_id=release_id)
