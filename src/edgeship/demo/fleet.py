"""The demo's moving parts: an MQTT broker, the update server and agent processes, runtimes.

Every process is started in its own session (process group), so stopping it also stops
whatever it started (the agent's health commands, llama.cpp children); the story runs
``edgeship.loopback.Processes.close`` on every exit path, so a failed demo leaves nothing
behind on the machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeship.errors import UsageError
from edgeship.loopback import free_port, wait_for
from edgeship.runtime.config import RuntimeConfig
from edgeship.runtime.server import BackgroundServer

TOPICS = "edgeship/#"


class MqttBroker:
    """amqtt, a pure-Python broker, on a loopback port in a thread; a subscriber counts results."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.messages: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._broker: Any = None
        self._subscriber: Any = None

    def start(self) -> MqttBroker:
        import paho.mqtt.client as mqtt

        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise UsageError("the demo's MQTT broker (amqtt) is not installed",
                             hint="pip install 'edgeship[demo]', or run `edgeship demo --offline`") from exc

        logging.getLogger("amqtt").setLevel(logging.ERROR)  # it logs every connection at INFO
        # Anonymous loopback clients only; no $SYS topics (they would need psutil and a timer).
        config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                  "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}

        async def start() -> None:
            self._broker = Broker(config, loop=self._loop)
            await self._broker.start()

        self._thread.start()
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(30)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edgeship-demo-subscriber")
        client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(TOPICS, qos=1)
        client.on_message = lambda _c, _u, m: self.messages.append({"topic": m.topic, **json.loads(m.payload)})
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        self._subscriber = client
        wait_for("the MQTT subscriber", client.is_connected, 10)
        return self

    def stop(self) -> None:
        if self._subscriber is not None:
            self._subscriber.disconnect()
            self._subscriber.loop_stop()
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass
class Device:
    name: str
    data: Path
    hardware: str  # the device profile it stands for; v3 fails its health suite on one of them
    pilot: bool
    runtime: BackgroundServer | None = None
    facts: dict[str, str | int] = field(default_factory=dict)  # what its agent presents (`agent run --fact`)
    learn_data: Path | None = None  # its own training text: the agent takes part in federated rounds

    @property
    def device_id(self) -> str:
        return str(json.loads((self.data / "identity.json").read_text())["device_id"])


@contextmanager
def in_process_logs(path: Path) -> Iterator[None]:
    """Send the log lines of the parts running in this process (runtimes, broker) to ``path``.

    Without a handler Python prints warnings to stderr, in the middle of the narration.
    """
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = [(lg, lg.propagate, lg.level) for lg in (logging.getLogger("edgeship"), logging.getLogger("amqtt"))]
    for lg, _propagate, _level in saved:
        lg.addHandler(handler)
        lg.propagate = False
    logging.getLogger("edgeship").setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, propagate, level in saved:
            lg.removeHandler(handler)
            lg.propagate, lg.level = propagate, level
        handler.close()


def start_runtime(data: Path, device_name: str, mqtt_url: str) -> BackgroundServer:
    """The device's inference runtime, serving the release ``current`` points at."""
    data.mkdir(parents=True, exist_ok=True)
    config = RuntimeConfig(data_dir=data, n_ctx=128, threads=1, mqtt_url=mqtt_url, device_id=device_name,
                           ready_wait_s=60.0)
    return BackgroundServer(config).start()


def agent_command(device: Device, server_url: str, root: Path, ca: Path, enroll_token: str) -> list[str]:
    argv = [sys.executable, "-m", "edgeship.agent", "run", "--data-dir", str(device.data), "--server", server_url,
            "--root", str(root), "--ca", str(ca), "--enroll-token", enroll_token, "--timezone", "UTC"]
    if device.runtime is not None:
        argv += ["--runtime", device.runtime.url]
    for key, value in device.facts.items():
        argv += ["--fact", f"{key}={value}"]
    if device.learn_data is not None:
        argv += ["--learn-data", str(device.learn_data)]
    return argv
