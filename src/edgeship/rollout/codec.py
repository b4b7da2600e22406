"""Rollouts as plain JSON-able dicts, so a server can store one and load it back unchanged."""

from __future__ import annotations

from typing import Any

from edgeship.errors import RolloutError
from edgeship.release.manifest import Requirements
from edgeship.rollout.health import HealthMargins
from edgeship.rollout.model import Rollout, RolloutState, RolloutStatus
from edgeship.rollout.policy import OnFail, RolloutPolicy, Stage
from edgeship.rollout.selector import Selector
from edgeship.rollout.window import MaintenanceWindow

FORMAT = "edgeship-rollout/1"


def rollout_to_dict(rollout: Rollout) -> dict[str, Any]:
    p, s = rollout.policy, rollout.state
    return {
        "format": FORMAT,
        "id": rollout.id,
        "release": rollout.release,
        "previous_release": rollout.previous_release,
        "release_ref": rollout.release_ref,
        "requirements": rollout.requirements.model_dump(mode="json"),
        "target": str(rollout.target),
        "policy": {
            "pilot": None if p.pilot is None else str(p.pilot),
            "pilot_bake": p.pilot_bake,
            "stages": [[st.percent, st.bake, st.max_failure] for st in p.stages],
            "max_pending": p.max_pending,
            "health": vars(p.health).copy(),
            "on_fail": p.on_fail.value,
            "window": None if p.window is None else p.window.as_dict(),
            "notice": p.notice,
        },
        "state": {**vars(s), "status": s.status.value},
    }


def rollout_from_dict(data: dict[str, Any]) -> Rollout:
    if data.get("format") != FORMAT:
        raise RolloutError(
            f"stored rollout has format {data.get('format')!r}, this edgeship reads {FORMAT}",
            hint="upgrade edgeship to read it",
        )
    try:
        p, s = data["policy"], data["state"]
        policy = RolloutPolicy(
            pilot=None if p["pilot"] is None else Selector.parse(p["pilot"]),
            pilot_bake=p["pilot_bake"],
            stages=tuple(Stage(*st) for st in p["stages"]),
            max_pending=p["max_pending"],
            health=HealthMargins(**p["health"]),
            on_fail=OnFail(p["on_fail"]),
            window=None if p["window"] is None else MaintenanceWindow.from_dict(p["window"]),
            notice=p["notice"],
        )
        return Rollout(
            id=data["id"],
            release=data["release"],
            previous_release=data["previous_release"],
            release_ref=data["release_ref"],
            requirements=Requirements.model_validate(data["requirements"]),
            target=Selector.parse(data["target"]),
            policy=policy,
            state=RolloutState(**{**s, "status": RolloutStatus(s["status"])}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RolloutError(f"stored rollout is damaged: {exc}", hint="restore it from the event log or start it again") from exc
