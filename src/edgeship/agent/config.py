"""Agent settings and where the agent keeps things on the device.

    <data>/
      identity.json              device id + secret from enrollment (0600)
      agent.lock                 held while an agent runs: one agent per data dir
      reserve                    preallocated room for the journal, status and events on a full disk
      journal.json               the job in progress (atomically replaced, fsynced)
      status.json                local status for the device's own software
      events/                    reports not yet accepted by the server, one file per event ID
      trust/                     python-tuf's trusted metadata (root.json, timestamp.json, ...)
      store/blobs/sha256/<hex>   verified component files, read-only, stored once
      store/partial/<hex>        downloads in progress (resumed with HTTP Range)
      store/manifests/<id>.json  verified manifests of releases being installed
      releases/<release-id>/     manifest.json + components (hard links into store/blobs)
      current -> releases/<id>   the release the device runs
      previous -> releases/<id>  the one it rolls back to
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_POLL_S = 30.0
DEFAULT_PUSH_POLL_S = 600.0  # between check-ins while MQTT push is up: notices say when to come sooner
DEFAULT_RECONNECT_SPREAD_S = 30.0  # seconds, see AgentConfig.push_reconnect_spread_s
# Slow retrieval: a link that works delivers far more than this; a mirror trickling bytes does not.
DEFAULT_MIN_RATE = 1024  # bytes per second, averaged over each window
DEFAULT_RATE_WINDOW_S = 60.0
DEFAULT_METADATA_TIMEOUT_S = 120.0  # a targets.json of a few MB at a slow cellular link's rate
DEFAULT_KEEP_FREE = 64 * 1024 * 1024  # bytes; logs and the device's own software need room too


@dataclass(frozen=True)
class DataDir:
    """Paths inside an agent's data directory (see the module docstring)."""

    root: Path

    @property
    def identity(self) -> Path:
        return self.root / "identity.json"

    @property
    def lock(self) -> Path:
        return self.root / "agent.lock"

    @property
    def reserve(self) -> Path:
        return self.root / "reserve"

    @property
    def journal(self) -> Path:
        return self.root / "journal.json"

    @property
    def learn(self) -> Path:
        """Federated training jobs, one directory per run and round."""
        return self.root / "learn"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def trust(self) -> Path:
        return self.root / "trust"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"


@dataclass
class AgentConfig:
    """Everything `edgeship agent run` can be told; every field has a safe default."""

    data_dir: Path
    server_url: str | None = None
    enroll_token: str | None = None
    # The operator's root.json, needed on first start only: afterwards the cached root
    # (and any signed rotation of it) is the only trust anchor.
    root_file: Path | None = None
    ca: Path | None = None  # CA bundle to pin for an HTTPS server
    tags: dict[str, str] = field(default_factory=dict)
    poll_interval_s: float = DEFAULT_POLL_S  # until the server names its own interval
    max_rate: int | None = None  # bytes per second for downloads; None = as fast as the link goes
    http_timeout_s: float = 30.0  # per read: a stalled server is abandoned after this
    # A blob download averaging less than this (bytes/s) over a window of rate_window_s is
    # cut, and resumed after a backoff; 0 = no floor. Keep it under max_rate.
    min_rate: int = DEFAULT_MIN_RATE
    rate_window_s: float = DEFAULT_RATE_WINDOW_S
    # Each TUF metadata file (and manifest) must arrive within this many seconds of its
    # response; else the refresh fails and the agent retries on its backoff.
    metadata_timeout_s: float = DEFAULT_METADATA_TIMEOUT_S
    # A download starts only if the data dir's file system has room for what the job still
    # needs plus this many bytes.
    keep_free: int = DEFAULT_KEEP_FREE
    download_attempts: int = 8  # per file, each resuming where the last stopped
    backoff_base_s: float = 1.0  # first retry waits up to this (full jitter, doubling)
    backoff_cap_s: float = 300.0  # no single wait is longer than this
    verify_attempts: int = 3  # fresh downloads after a hash mismatch before the job fails
    # Download as soon as assigned and wait in `staged` for the window (False: wait first).
    download_early: bool = True
    trial_attempts: int = 2  # trials interrupted by a crash before the release is rolled back
    trial_timeout_s: float = 300.0  # model parsing; the health command has its own timeout
    timezone: str | None = None  # IANA zone for maintenance windows; None = the system's
    # The device's `edgeship runtime serve` (same data dir): swapped to each new release, and
    # runs the release's inference checks in the trial. None: no runtime on this device.
    runtime_url: str | None = None
    mqtt_url: str | None = None  # mqtt(s)://host:port of the broker for push notices (edgeship.agent.push)
    mqtt_ca: Path | None = None  # CA that signed the broker's certificate (mqtts)
    push_poll_interval_s: float = DEFAULT_PUSH_POLL_S
    # The catch-up check-in after a (re)connection to the broker waits a random part of this:
    # after a broker restart the whole fleet reconnects at once.
    push_reconnect_spread_s: float = DEFAULT_RECONNECT_SPREAD_S
    # Facts reported instead of the measured ones (see ``agent.api.FACT_KEYS``), e.g. a
    # test bench standing in for an aarch64 board; requirement checks use them too.
    facts: dict[str, str | int] = field(default_factory=dict)
    # A directory of local training text (JSONL): with it the device takes part in federated
    # rounds (edgeship.agent.federated); the text never leaves the device. None: it never trains.
    learn_data: Path | None = None

    @property
    def paths(self) -> DataDir:
        return DataDir(Path(self.data_dir))

    def zone_name(self) -> str:
        return self.timezone or system_timezone()


def system_timezone() -> str:
    """The device's IANA zone: $TZ, /etc/timezone, or the /etc/localtime link; else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz and not tz.startswith("/"):
        return tz
    with contextlib.suppress(OSError):  # no /etc/timezone on many systems: try the link
        text = Path("/etc/timezone").read_text().strip()
        if text:
            return text
    link = Path("/etc/localtime")
    if link.is_symlink():
        target = str(link.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return "UTC"
