"""Run a runtime under uvicorn: in the foreground (the CLI) or on a background thread (tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from edgeship.errors import RuntimeBackendError
from edgeship.runtime.app import create_app
from edgeship.runtime.config import RuntimeConfig, device_id, mqtt_login
from edgeship.runtime.service import Runtime


def build_runtime(config: RuntimeConfig) -> Runtime:
    """A runtime with the MQTT publisher the config asks for (if any)."""
    runtime = Runtime(config)
    if config.mqtt_url:
        from edgeship.runtime.mqtt import MqttPublisher

        username, password = mqtt_login(config)
        runtime.publisher = MqttPublisher(config.mqtt_url, device_id(config), ca=config.mqtt_ca, username=username,
                                          password=password, buffer=config.mqtt_buffer, on_drop=runtime.metrics.mqtt_dropped.inc)
    return runtime


def _uvicorn(runtime: Runtime, log_level: str, host: str = "127.0.0.1", port: int = 0) -> uvicorn.Server:
    # One worker: the models live in this process, and two workers would load them twice.
    config = uvicorn.Config(create_app(runtime), host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def serve(config: RuntimeConfig, *, log_level: str = "info") -> None:
    """Serve until interrupted."""
    runtime = build_runtime(config)
    _uvicorn(runtime, log_level, config.host, config.port).run()


class BackgroundServer:
    """A runtime serving on a free loopback port from a thread; ``with`` it to start and stop."""

    def __init__(self, config: RuntimeConfig, *, runtime: Runtime | None = None) -> None:
        self.runtime = runtime or build_runtime(config)
        self._server = _uvicorn(self.runtime, "warning")
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))  # bound before uvicorn starts: no race for the port
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def data_dir(self) -> Path:
        return Path(self.runtime.config.data_dir)

    def start(self, timeout: float = 60.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeBackendError("the runtime server did not start", hint="see its log output above")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
