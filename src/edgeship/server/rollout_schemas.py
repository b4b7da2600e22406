"""Request and response bodies of the rollout, experiment and webhook API (docs/rollouts.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from edgeship.rollout import StageCount
from edgeship.server.schemas import Body


class RolloutCreate(Body):
    """The operator's flags, as written; the server parses them with ``RolloutPolicy.from_options``."""

    release: str = Field(max_length=200, description="name@version, or name for its newest version")
    target: str | None = Field(None, max_length=2000, description="selector, e.g. site=berlin,hw=pi5 (none: the fleet)")
    device_ids: list[str] = Field(default_factory=list, max_length=10_000)
    pilot: str | None = Field("ring=pilot", max_length=2000, description="pilot selector; none or '' for no pilot")
    stages: str | None = Field(None, max_length=200, description="e.g. 1,10,50,100")
    bake: str | None = Field(None, max_length=32, description="e.g. 30m")
    max_failure: str | None = Field(None, max_length=32, description="e.g. 2%")
    window: str | None = Field(None, max_length=32, description="e.g. 02:00-04:00, device local time")
    notice: str | None = Field(None, max_length=32, description="e.g. 1h")
    on_fail: Literal["pause", "rollback"] = "pause"
    rollback_to: str | None = Field(None, max_length=128, description="version to roll back to; one the release signed (default: its rollback_to)")


class RolloutAction(Body):
    reason: str | None = Field(None, max_length=500)
    rollback: bool = True  # abort only: order devices back to the previous release


class RolloutOut(BaseModel):
    id: str
    release: str
    previous: str | None
    target: str
    status: str
    phase: str
    reason: str
    rollback: bool
    rollback_remaining: int
    skipped: int
    not_targeted: int
    stages: list[StageCount]  # the engine's own record; bake_left in seconds, while baking
    health_regressions: list[str]
    policy: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    evaluated_at: datetime | None


class ExperimentCreate(Body):
    release_a: str = Field(max_length=200, description="name@version")
    release_b: str = Field(max_length=200, description="name@version")
    split: float = Field(50.0, gt=0, lt=100, description="percent of the targeted devices on A")
    target: str | None = Field(None, max_length=2000)
    duration: str = Field("24h", max_length=32)


class ComparisonOut(BaseModel):
    metric: str
    test: str
    a: float
    b: float
    p_value: float | None
    better: str | None


class ExperimentOut(BaseModel):
    id: str
    release_a: str
    release_b: str
    split: float
    target: str
    status: str  # running | finished
    devices_a: int
    devices_b: int
    verdict: str
    reason: str
    comparisons: list[ComparisonOut]
    created_at: datetime
    ends_at: datetime


class WebhookCreate(Body):
    url: str = Field(max_length=2000)
    secret: str = Field(min_length=16, max_length=200, description="shared secret for the HMAC-SHA256 signature")


class WebhookOut(BaseModel):
    id: str
    url: str
    created_at: datetime
