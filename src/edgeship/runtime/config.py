"""Runtime settings: every `edgeship runtime serve` flag is a field here, with its default."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from edgeship.store.fsutil import write_atomic

# Lives in the agent's data dir beside identity.json: the agent reads it to call the
# admin endpoint, nobody else on the device can (0600).
TOKEN_FILE = "runtime.token"


@dataclass(frozen=True)
class RuntimeConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int | None = None  # llama.cpp CPU threads; None = llama.cpp's default
    n_ctx: int = 2048  # tokens of context per LLM (bounded by what the model was trained for)
    # Bytes the loaded models may use together (from the device profile). When the new
    # release plus the old one would exceed it, the swap drains the old one first.
    memory_budget: int | None = None
    # The device's accelerator and GPU memory (from the profile): what the backend plan offloads to.
    accelerator: str | None = None  # cuda, npu, ane, qnn, ... None: CPU only
    vram: int | None = None  # bytes of dedicated GPU memory
    unified_memory: bool = False  # the GPU shares RAM: it may use the memory budget
    max_body_bytes: int = 16 * 1024 * 1024  # larger uploads get 413 before they are read whole
    ready_wait_s: float = 30.0  # a request arriving while no model is loaded waits this long, then gets 503
    drain_timeout_s: float = 120.0  # a swap waits this long for in-flight requests on the old release
    mqtt_url: str | None = None  # mqtt://host:port or mqtts://host:port
    mqtt_ca: Path | None = None  # CA bundle that signed the broker's certificate (mqtts)
    mqtt_buffer: int = 1000  # results kept while the broker is away; newer ones are dropped beyond it
    device_id: str | None = None  # MQTT topic and client ID; None = the agent's identity, else the host name

    @property
    def token_path(self) -> Path:
        return Path(self.data_dir) / TOKEN_FILE


def ensure_token(path: Path) -> str:
    """The admin token at ``path``, created (0600 from the first byte) if missing."""
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    write_atomic(path, token.encode(), mode=0o600)
    return token


def read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def device_id(config: RuntimeConfig) -> str:
    """Who this device is on MQTT: the flag, else the ID the agent enrolled with, else the host name."""
    if config.device_id:
        return config.device_id
    from edgeship.agent.api import load_identity
    from edgeship.agent.config import DataDir

    identity = load_identity(DataDir(Path(config.data_dir)).identity)
    return identity.device_id if identity else os.uname().nodename


def mqtt_login(config: RuntimeConfig) -> tuple[str | None, str | None]:
    """The agent's broker login — its device ID and the password derived from its secret — for
    a runtime publishing as that device (the ACL of `edgeship mqtt config` lets that user write
    the device's result topics). None when the URL carries its own login (it wins), when there
    is no enrolled agent or when another ID was given."""
    from edgeship.agent.api import load_identity
    from edgeship.agent.config import DataDir
    from edgeship.mqtt import Broker, device_password

    if config.mqtt_url and Broker.parse(config.mqtt_url).username:
        return None, None

    identity = load_identity(DataDir(Path(config.data_dir)).identity)
    if identity is None or (config.device_id and config.device_id != identity.device_id):
        return None, None
    return identity.device_id, device_password(identity.secret)
