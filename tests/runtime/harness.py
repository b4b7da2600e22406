"""Test and benchmark helpers: a device data dir to install releases into, and a request load."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from edgeship.agent.store import CURRENT, DeviceStore
from edgeship.release.inspect import inspect_component
from edgeship.release.manifest import MEDIA_TYPES, Component, ComponentKind, HealthSuite, Manifest
from edgeship.store.digest import hash_file

PROMPT = {"model": "llm", "prompt": "Swap", "max_tokens": 3, "temperature": 0}
TENSOR = {"inputs": {"image": [[[[0.5] * 32] * 32] * 3]}}


@dataclass
class Device:
    """A device data dir with a store the tests install releases into, as the agent would."""

    root: Path

    @property
    def store(self) -> DeviceStore:
        return DeviceStore(self.root)

    def install(self, version: str, files: dict[str, tuple[ComponentKind, Path]], *,
                meta: dict[str, dict[str, Any]] | None = None, health: HealthSuite | None = None,
                make_current: bool = True, inspect: bool = True) -> str:
        """Install a release; ``inspect=False`` lets a broken model through, as only a device finds out."""
        components = []
        for name, (kind, path) in files.items():
            digest, size = hash_file(path)
            info = inspect_component(kind, path) if kind.is_model and inspect else {}
            components.append(Component(name=name, kind=kind, path=path.name, digest=str(digest), size=size,
                                        media_type=MEDIA_TYPES[kind], meta={**info, **(meta or {}).get(name, {})}))
            self.store.blobs.put_file(path)
        manifest = Manifest(name="assistant", version=version, components=tuple(components),
                            health=health or HealthSuite(), created=Manifest.now())
        store = self.store
        store.save_manifest(manifest.release_id, manifest.canonical_bytes())
        store.stage(manifest.release_id)
        if make_current:
            store.switch(manifest.release_id, store.link(CURRENT))
        return manifest.release_id



@dataclass
class Load:
    """Clients sending completions and predictions without pause, recording every answer."""

    url: str
    threads: int = 2
    prompt: dict[str, Any] = field(default_factory=lambda: PROMPT)  # the completion each client sends
    predict: bool = True  # every third request is a /v1/predict (the release has a tensor model)
    answers: list[tuple[float, float, int, str | None, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            i = 0
            while not self._stop.is_set():
                started = time.monotonic()
                if self.predict and (i + n) % 3 == 0:
                    reply = http.post("/v1/predict", json=TENSOR)
                    release, text = (reply.json().get("release_id"), None) if reply.status_code == 200 else (None, None)
                else:
                    reply = http.post("/v1/completions", json=self.prompt)
                    body = reply.json() if reply.status_code == 200 else {}
                    release, text = body.get("system_fingerprint"), (body.get("choices") or [{}])[0].get("text")
                self.answers.append((started, time.monotonic(), reply.status_code, release, text))
                i += 1

    def __enter__(self) -> Self:
        self._threads = [threading.Thread(target=self._loop, args=(n,)) for n in range(self.threads)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
