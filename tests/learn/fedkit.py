"""Real weight updates for federated tests: tiny GGUF models with numpy-perturbed weights, as deltas."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from edgeship.delta import make_patch
from edgeship.samples.llama import TinyLlama, tensors, write_tiny_llama


def perturbed(base_spec: TinyLlama, out: Path, *, seed: int, scale: float = 1e-3, override: dict[str, np.ndarray] | None = None) -> Path:
    """The base model with every weight moved by N(0, scale²): what a few training steps look like."""
    rng = np.random.default_rng(seed)
    weights = {k: (v + rng.standard_normal(v.shape) * scale).astype(np.float32) for k, v in tensors(base_spec).items()}
    weights.update(override or {})
    return write_tiny_llama(out, base_spec, weights=weights)


def update_file(base: Path, tuned: Path, out: Path) -> Path:
    make_patch(base, tuned, out)
    return out


@dataclass
class FedDevice:
    url: str
    id: str
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.id}.{self.secret}"}

    def task(self) -> dict | None:
        r = httpx.get(f"{self.url}/v1/devices/{self.id}/federated", headers=self.auth, timeout=30)
        r.raise_for_status()
        return r.json()["task"]

    def upload(self, run_id: str, patch: Path, samples: int, metrics: str = "{}", round_no: int = 1) -> httpx.Response:
        """PUT the update for one run's round (addressed explicitly: several runs may be open)."""
        headers = {**self.auth, "Edgeship-Samples": str(samples), "Edgeship-Metrics": metrics}
        url = f"{self.url}/v1/devices/{self.id}/federated/{run_id}/{round_no}"
        return httpx.put(url, content=patch.read_bytes(), headers=headers, timeout=60)


def enroll(url: str, token: str) -> FedDevice:
    r = httpx.post(f"{url}/v1/devices/enroll", json={"token": token, "facts": {"arch": "x86_64", "ram": 1 << 30}}, timeout=30)
    r.raise_for_status()
    body = r.json()
    return FedDevice(url, body["device_id"], body["secret"])


class RecordingProxy:
    """A TCP relay in front of the server that keeps every byte clients send through it."""

    def __init__(self, upstream_port: int) -> None:
        import socket
        import threading

        self.upstream = upstream_port
        self.sent = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: object, dst: object, record: bool) -> None:
        import socket

        assert isinstance(src, socket.socket) and isinstance(dst, socket.socket)
        try:
            while chunk := src.recv(65536):
                if record:
                    with self._lock:
                        self.sent += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
