"""``ServerSettings``: every knob of the update server in one model.

Each field is a ``edgeship server`` flag (``--database-url``) and an environment variable
(``EDGESHIP_DATABASE_URL``); flags win over the environment, the environment over the
defaults. Worker processes started by uvicorn get their settings only from the environment,
which is why every field must round-trip through ``to_env``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeship.errors import UsageError
from edgeship.mqtt import MAX_BUFFER, Broker

ENV_PREFIX = "EDGESHIP_"
# S3 bucket naming rules (3-63 lowercase letters, digits, dots, hyphens), then an optional key prefix.
_S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")


class ServerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for every interface).")
    port: int = Field(8443, ge=0, le=65535, description="TCP port (0 picks a free one).")
    data_dir: Path = Field(Path("edgeship-server"), description="Repository, blobs, keys, uploads and the default SQLite database live here.")
    database_url: str = Field("", description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db (default: SQLite in the data dir).")
    tls_cert: Path | None = Field(None, description="PEM server certificate (with `edgeship certs init`: <data-dir>/tls/server.pem).")
    tls_key: Path | None = Field(None, description="PEM private key of the server certificate.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (each a full app; they share only the database and the data dir).")
    poll_interval_s: int = Field(30, ge=1, description="How often devices are told to check in, in seconds.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest JSON request body; bigger ones get 413.")
    max_metadata_bytes: int = Field(16 << 20, ge=1024, description="Largest operator metadata upload (targets can name many blobs).")
    max_blob_bytes: int = Field(64 << 30, ge=1, description="Largest blob an operator may upload, in bytes.")
    max_update_bytes: int = Field(256 << 20, ge=1024, description="Largest weight update (a delta) a device may upload for a federated round, in bytes.")
    max_events_per_batch: int = Field(500, ge=1, description="Most events one device request may carry.")
    timestamp_check_s: float = Field(300.0, gt=0, description="How often the timestamp job looks at the timestamp's expiry, in seconds.")
    timestamp_margin_s: float = Field(43200.0, gt=0, description="Re-sign the timestamp when it expires sooner than this, in seconds.")
    rollout_check_s: float = Field(5.0, gt=0, description="How often the rollout job re-decides live rollouts and sends webhooks, in seconds.")
    webhook_retry_s: float = Field(5.0, gt=0, description="First retry delay of a failed webhook delivery, doubling up to an hour, in seconds.")
    snapshot_expiry_days: float = Field(7.0, gt=0, description="Validity of a snapshot the server signs.")
    timestamp_expiry_days: float = Field(1.0, gt=0, description="Validity of a timestamp the server signs.")
    blob_store: str = Field(
        "",
        description="Where blobs, deltas and release manifests live: s3://bucket/prefix for an S3-compatible store "
        "(endpoint, region and credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), "
        "default: <data-dir>/repository.",
    )
    s3_presign: bool = Field(False, description="Answer blob and delta downloads with a 307 to a presigned S3 URL instead of proxying them (devices must reach the S3 endpoint).")
    s3_presign_expiry_s: int = Field(300, ge=1, le=7 * 86400, description="Lifetime of a presigned download URL, in seconds (a device resumes through the server for a new one).")
    mqtt: str = Field("", description="Push \"check now\" notices to devices through this MQTT broker: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (docs/server.md, Push); default: no push.")
    mqtt_ca: Path | None = Field(None, description="CA file that signed the broker's certificate (mqtts).")
    mqtt_username: str = Field("", description="The server's broker user (the one `edgeship mqtt config` writes; default: from the URL).")
    mqtt_password: str = Field("", description="Its password (better given as the environment variable than as a flag).")
    mqtt_dynsec: bool = Field(False, description="Keep device broker accounts in Mosquitto's dynamic-security plugin: enrollment creates a device's account and ACL and decommissioning deletes them at once, through the plugin's control topic (`edgeship mqtt config --dynsec` writes the broker's first config).")
    mqtt_buffer: int = Field(60_000, ge=1, description=f"Notices kept while the broker is slow or away (about 200 bytes each, at most {MAX_BUFFER:,}); beyond it they are dropped and devices learn at their next poll.")
    push_rate: float = Field(500.0, gt=0, description="Check-ins per second the servers should absorb from one push: a notice reaching N devices tells them to spread their check-ins over N / this many seconds (docs/scaling.md, Check-in storms).")
    access_log: bool = Field(True, description="Write one JSON line per request.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    migrate: bool = Field(True, description="Apply database migrations at start (workers started by `edgeship server` skip it: the parent did it).")

    @field_validator("blob_store")
    @classmethod
    def _blob_store_url(cls, value: str) -> str:
        if value and not _S3_URL.match(value):
            raise ValueError("use s3://bucket or s3://bucket/prefix (or leave it empty for the data dir)")
        return value

    @field_validator("mqtt_buffer")
    @classmethod
    def _mqtt_buffer(cls, value: int) -> int:
        if value > MAX_BUFFER:
            raise ValueError(f"at most {MAX_BUFFER:,}: the MQTT client numbers unacknowledged notices with 16 bits")
        return value

    @field_validator("mqtt")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        if not value:
            return value
        if not re.match(r"^mqtts?://[^/\s]+/?$", value):
            raise ValueError("use mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (or leave it empty for no push)")
        try:
            Broker.parse(value)
        except UsageError as exc:
            raise ValueError(f"{exc.message}; {exc.hint}") from None
        return value

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "edgeship.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @classmethod
    def env_name(cls, field: str) -> str:
        return ENV_PREFIX + field.upper()

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Defaults, then ``EDGESHIP_*`` variables, then ``overrides`` (flags that were given)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {f: env[cls.env_name(f)] for f in cls.model_fields if cls.env_name(f) in env}
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        try:
            settings = cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            raise UsageError(
                f"server setting {field} is not valid: {first['msg']}",
                hint=f"check --{field.replace('_', '-')} or ${cls.env_name(field)}",
            ) from None  # the ValidationError quotes the value given, which may hold a password
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise UsageError("--tls-cert and --tls-key go together", hint="pass both, or neither for plain HTTP")
        return settings

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables, for worker processes."""
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                out[self.env_name(name)] = str(value).lower() if isinstance(value, bool) else str(value)
        return out
