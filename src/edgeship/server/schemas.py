"""Request and response bodies of the HTTP API (docs/protocol.md), validated at the boundary."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from edgeship.errors import UsageError

TAG_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,63}$")
STATES = (
    "idle", "assigned", "waiting_window", "downloading", "verifying", "staged",
    "switching", "trial", "committed", "rolled_back", "failed",
)
EVENT_TYPES = ("state", "error", "health", "metrics", "feedback", "download")

State = Literal[
    "idle", "assigned", "waiting_window", "downloading", "verifying", "staged",
    "switching", "trial", "committed", "rolled_back", "failed",
]
ShortText = Annotated[str, StringConstraints(max_length=256)]


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tag keys end up in selectors and JSON paths, so they are plain; values are free text."""
    if len(tags) > 32:
        raise ValueError("at most 32 tags")
    for key in tags:
        if not TAG_KEY_RE.match(key):
            raise ValueError(f"tag key {key!r} must be 1-64 letters, digits, '_', '.', '-' or '/'")
    return tags


def parse_tag(text: str) -> tuple[str, str]:
    """"k=v" from a URL or a flag, checked like a tag in a body."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"tag {text[:80]!r} must be written key=value")
    try:
        check_tags({key: value})
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if len(value) > 256:
        raise UsageError("tag values are at most 256 characters")
    return key, value


def reject_nul(value: Any) -> Any:
    """``value`` unchanged, or ValueError if a string in it (or a key) holds a NUL character.

    PostgreSQL text and JSON cannot store NUL: refused here, a client hears which request was
    wrong instead of getting a database error. Iterative, so deep nesting cannot overflow.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL (\\u0000) characters")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return value


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return reject_nul(data)


class Facts(BaseModel):
    """What a device says about itself; unknown facts are kept (newer agents may send more)."""

    model_config = ConfigDict(extra="allow")

    arch: ShortText | None = None
    ram: int | None = Field(None, ge=0)
    accelerator: ShortText | None = None
    os: ShortText | None = None
    agent_version: ShortText | None = None
    timezone: ShortText | None = None
    hostname: ShortText | None = None


Tags = Annotated[dict[str, ShortText], AfterValidator(check_tags), Field(default_factory=dict)]


class EnrollRequest(Body):
    token: str = Field(max_length=200)
    facts: Facts
    tags: Tags


class EnrollResponse(BaseModel):
    device_id: str
    secret: str
    poll_interval_s: int
    tags: dict[str, str]


class ReleaseRef(Body):
    name: str = Field(max_length=64)
    version: str = Field(max_length=128)
    release_id: str | None = Field(None, max_length=64)


class CheckinRequest(Body):
    current: ReleaseRef | None = None
    previous: ReleaseRef | None = None
    state: State = "idle"
    facts: Facts | None = None


class Window(BaseModel):
    start: str
    end: str


class AssignmentOut(BaseModel):
    name: str
    version: str
    release_id: str
    rollback: bool = False
    rollout_id: str | None = None
    window: Window | None = None
    notice_s: int = 0


class CheckinResponse(BaseModel):
    assignment: AssignmentOut | None
    poll_interval_s: int
    repo_path: str = "/repo/"
    tags: dict[str, str] = {}  # the device's tags as the server knows them: its push topics follow them


class MqttAccount(BaseModel):
    device_id: str
    password_hash: str  # Mosquitto's $7$ form of the device's MQTT password (edgeship.broker)
    tags: dict[str, str]


class EventIn(Body):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    time: AwareDatetime
    type: Literal["state", "error", "health", "metrics", "feedback", "download"]
    state: State | None = None
    release: str | None = Field(None, max_length=200)
    data: dict[str, Any] = Field(default_factory=dict)


class EventsRequest(Body):
    events: list[EventIn] = Field(max_length=10_000)


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int


# -- operator API -------------------------------------------------------------------------


class EnrollTokenCreate(Body):
    tags: Tags
    # Bounded so that a count fits the database's integer and an expiry a date.
    uses: int | None = Field(None, ge=1, le=2**31 - 1, description="how many devices may enroll with it (none: unlimited)")
    expires_s: int | None = Field(None, gt=0, le=100 * 365 * 86400, description="lifetime in seconds (none: until revoked)")


class EnrollTokenOut(BaseModel):
    id: str
    token: str | None = None  # only in the answer to its creation
    tags: dict[str, str]
    uses_allowed: int | None
    uses: int
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class AdminTokenCreate(Body):
    name: str = Field("", max_length=200)


class AdminTokenOut(BaseModel):
    id: str
    token: str
    name: str


class DeviceOut(BaseModel):
    id: str
    tags: dict[str, Any]
    facts: dict[str, Any]
    state: str
    current: dict[str, Any] | None
    previous: dict[str, Any] | None
    enrolled_at: datetime
    last_seen_at: datetime | None
    decommissioned_at: datetime | None
    assignment: AssignmentOut | None = None


class AssignmentCreate(Body):
    release: str = Field(max_length=200, description="name@version")
    tag: str | None = Field(None, max_length=330, description="k=v")
    device_id: str | None = Field(None, max_length=32)
    rollback: bool = False


class AssignmentRecord(BaseModel):
    id: int
    release: str
    release_id: str
    rollback: bool
    device_id: str | None
    tag: str | None
    created_at: datetime


class EventOut(BaseModel):
    seq: int
    device_id: str
    id: str
    time: datetime
    type: str
    state: str | None
    release: str | None
    data: dict[str, Any]
    received_at: datetime


class EventPage(BaseModel):
    events: list[EventOut]
    next_after: int


class PublishResult(BaseModel):
    targets_version: int
    snapshot_version: int
    timestamp_version: int
    root_version: int
    releases: list[str]
    bins: dict[str, int] = Field(default_factory=dict)  # published version of each hashed bin (none when flat)


class UploadStatus(BaseModel):
    digest: str
    offset: int
    complete: bool


class MetadataUpload(Body):
    """Operator-signed TUF metadata as JSON objects (signatures cover ``signed``, not the bytes)."""

    targets: dict[str, Any]
    roots: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    bins: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=16384)  # the hashed bins that changed, by name

    def targets_bytes(self) -> bytes:
        return json.dumps(self.targets, indent=1, sort_keys=True).encode()

    def bins_bytes(self) -> dict[str, bytes]:
        return {name: json.dumps(doc, indent=1, sort_keys=True).encode() for name, doc in self.bins.items()}

    def roots_bytes(self) -> list[bytes]:
        return [json.dumps(r, indent=1, sort_keys=True).encode() for r in self.roots]
