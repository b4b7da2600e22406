"""What a simulation leaves behind: ``report.json`` and a PNG chart."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeship.rollout import DeviceState
from edgeship.rollout.policy import format_percents
from edgeship.sim.runner import SimResult

# Chart order follows the agent's state machine, so the stack reads bottom-up as progress.
_STATE_ORDER = [s.value for s in DeviceState]


def build_report(result: SimResult) -> dict[str, Any]:
    cfg, decision = result.config, result.decision
    policy = cfg.policy
    return {
        "config": {
            "devices": cfg.devices,
            "seed": cfg.seed,
            "release_bad_rate": cfg.release_bad_rate,
            "faults": dataclasses.asdict(cfg.faults),
            "stages": format_percents([s.percent for s in policy.stages]),
            "bake_s": policy.stages[0].bake,
            "max_failure": policy.stages[0].max_failure,
            "on_fail": policy.on_fail.value,
            "window": str(policy.window) if policy.window else None,
            "notice_s": policy.notice,
            "tick_s": cfg.tick,
        },
        "fleet": result.fleet.devices.mix(),
        "result": {
            **decision.summary(),
            "simulated_s": result.duration,
            "devices_started": int(result.fleet.started.sum()),
            "devices_ran_release": int(result.fleet.ran.sum()),
            "pilot_plus_first_stage": result.first_stage_size,
            "rollback_orders": result.fleet.rollback_orders,
            "on_previous_release_at_end": result.on_previous_at_end,
            "stalled": result.stalled,
        },
        "timeline": [
            {
                "t_s": e.at - cfg.start,
                "at": _iso(e.at),
                "status": e.status.value,
                "phase": e.phase,
                "message": e.message,
            }
            for e in result.events
        ],
        "samples": [dataclasses.asdict(s) for s in result.samples],
    }


def write_outputs(result: SimResult, out: Path) -> dict[str, Path]:
    """Write ``report.json`` and ``rollout.png`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.json"
    report.write_text(json.dumps(build_report(result), indent=2) + "\n")
    chart = out / "rollout.png"
    write_chart(result, chart)
    return {"report": report, "chart": chart}


def write_chart(result: SimResult, path: Path) -> None:
    # Agg: no display on servers and CI; imported here so the engine never needs matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [s.t / 3600 for s in result.samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
    seen = {k for s in result.samples for k in s.states}
    states = [k for k in _STATE_ORDER if k in seen]
    top.stackplot(hours, [[s.states.get(k, 0) for s in result.samples] for k in states], labels=states, alpha=0.85)
    top.set_ylabel("devices")
    top.set_title(f"{result.config.devices} simulated devices: agent state over time")
    top.legend(loc="upper left", fontsize=7, ncol=4)
    for i, phase in enumerate(result.config.policy.phases):
        line = bottom.plot(hours, [s.stages[i][0] for s in result.samples], label=f"{phase.name} done")[0]
        bottom.plot(hours, [s.stages[i][1] for s in result.samples], linestyle="--", color=line.get_color())
    bottom.set_ylabel("devices per stage (dashed: failed)")
    bottom.set_xlabel("hours since start")
    bottom.legend(loc="upper left", fontsize=7, ncol=3)
    for e in result.events:
        for ax in (top, bottom):
            ax.axvline((e.at - result.config.start) / 3600, color="grey", linewidth=0.6, linestyle=":")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
