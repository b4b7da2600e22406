"""A stored rollout loads back equal, and a damaged one is refused with a clear error."""

import json

import pytest

from edgeship.errors import RolloutError
from edgeship.release.manifest import Requirements
from edgeship.rollout import MaintenanceWindow, Rollout, RolloutPolicy, Selector, pause
from edgeship.rollout.codec import rollout_from_dict, rollout_to_dict


@pytest.mark.parametrize("pilot", ["ring=pilot", None])
def test_round_trip_through_json(pilot: str | None) -> None:
    policy = RolloutPolicy.from_options(
        stages="5,50,100", bake="1h", max_failure="1%", pilot=pilot, window="23:00-01:00", notice="15m", on_fail="rollback"
    )
    ro = Rollout(
        "ro-9",
        "new",
        previous_release="old",
        release_ref="detector@2.1.0",
        requirements=Requirements(min_ram=4 << 30, arch=("arm64",)),
        target=Selector.parse("site=berlin,site=paris,hw=pi5"),
        policy=policy,
    )
    ro = pause(ro, 1234.5, "operator looked at the dashboard")
    stored = json.loads(json.dumps(rollout_to_dict(ro)))
    assert rollout_from_dict(stored) == ro
    assert stored["policy"]["window"] == {"start": "23:00", "end": "01:00"}


def test_window_wire_form() -> None:
    w = MaintenanceWindow.parse("02:00-04:00")
    assert MaintenanceWindow.from_dict(w.as_dict()) == w


def test_damaged_or_foreign_rollouts_are_refused() -> None:
    good = rollout_to_dict(Rollout("ro-1", "new"))
    with pytest.raises(RolloutError, match="format"):
        rollout_from_dict({**good, "format": "edgeship-rollout/99"})
    broken = {**good, "state": {**good["state"], "status": "exploded"}}
    with pytest.raises(RolloutError, match="damaged"):
        rollout_from_dict(broken)
