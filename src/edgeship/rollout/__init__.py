"""Rollout engine: pure logic shared by the server and the fleet simulator (no I/O, no clock)."""

from edgeship.rollout.cohort import cohort_value
from edgeship.rollout.engine import (
    Assignment,
    AssignmentReason,
    Decision,
    RolloutEvent,
    StageCount,
    Tally,
    abort,
    decide,
    decide_tally,
    pause,
    place,
    promote,
    reordered,
    resume,
    row_key,
)
from edgeship.rollout.experiment import Arms, Experiment, ExperimentVerdict, collect, evaluate
from edgeship.rollout.health import HealthMargins, HealthMetrics
from edgeship.rollout.model import (
    DeviceFacts,
    DeviceState,
    DeviceView,
    Rollout,
    RolloutState,
    RolloutStatus,
)
from edgeship.rollout.policy import OnFail, RolloutPolicy, Stage
from edgeship.rollout.selector import Selector
from edgeship.rollout.window import MaintenanceWindow, next_switch_time

__all__ = [
    "Arms",
    "Assignment",
    "AssignmentReason",
    "Decision",
    "DeviceFacts",
    "DeviceState",
    "DeviceView",
    "Experiment",
    "ExperimentVerdict",
    "HealthMargins",
    "HealthMetrics",
    "MaintenanceWindow",
    "OnFail",
    "Rollout",
    "RolloutEvent",
    "RolloutPolicy",
    "RolloutState",
    "RolloutStatus",
    "Selector",
    "Stage",
    "StageCount",
    "Tally",
    "abort",
    "cohort_value",
    "collect",
    "decide",
    "decide_tally",
    "evaluate",
    "next_switch_time",
    "pause",
    "place",
    "promote",
    "reordered",
    "resume",
    "row_key",
]
