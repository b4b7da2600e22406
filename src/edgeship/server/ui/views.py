"""What each dashboard page shows, gathered through the library calls the JSON API makes.

Nothing here decides anything: rollouts are acted on by ``rollouts.act``, devices come from
``fleet``, releases from the signed targets. Each function opens its own transaction.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edgeship.release.manifest import Manifest, parse_version
from edgeship.rollout import HealthMetrics, RolloutStatus
from edgeship.server import events, experiments, federated, fleet, rollouts, schemas
from edgeship.server import rollout_schemas as ro_schemas
from edgeship.server.context import ServerContext
from edgeship.server.problems import NotReady
from edgeship.server.reports import device_views
from edgeship.server.ui.timeline import Chart, chart, state_counts
from edgeship.trust.targets import deltas_to

FLEET_LIMIT = 5000  # devices on one page; the API pages beyond that
DEVICE_EVENTS = 1000  # a device's newest events read for its page (feedback is picked from them)
SHOWN_EVENTS = 100  # of those, the events listed
_NO_RELEASE = "(none)"


def release_label(release: dict[str, Any] | None) -> str:
    return f"{release['name']}@{release['version']}" if release else _NO_RELEASE


@dataclass(frozen=True)
class FleetPage:
    tag: str
    devices: list[schemas.DeviceOut]
    health: dict[str, HealthMetrics]
    by_release: list[tuple[str, int]]
    by_state: list[tuple[str, int]]


def fleet_page(ctx: ServerContext, tag: str) -> FleetPage:
    selector = schemas.parse_tag(tag) if tag else None
    with ctx.db.read() as session:
        devices = [fleet.device_out(session, d) for d in fleet.list_devices(session, selector, "", FLEET_LIMIT)]
        health = {v.id: v.health for v in device_views(session) if v.health is not None}
    return FleetPage(
        tag=tag,
        devices=devices,
        health=health,
        by_release=Counter(release_label(d.current) for d in devices).most_common(),
        by_state=Counter(d.state for d in devices).most_common(),
    )


@dataclass(frozen=True)
class DevicePage:
    device: schemas.DeviceOut
    events: list[schemas.EventOut]  # newest first
    feedback: list[schemas.EventOut]


def device_page(ctx: ServerContext, device_id: str) -> DevicePage:
    with ctx.db.read() as session:
        device = fleet.device_out(session, fleet.get_device(session, device_id), with_assignment=True)
        newest = events.latest_events(session, device_id, DEVICE_EVENTS)
    return DevicePage(device, newest[:SHOWN_EVENTS], [e for e in newest if e.type == "feedback"])


@dataclass(frozen=True)
class ReleaseRow:
    ref: str
    release_id: str
    rollback_allowed: list[str]  # versions devices may be ordered back to, signed with the release
    manifest: Manifest
    deltas: list[dict[str, Any]]

    @property
    def size(self) -> int:
        return sum(c.size for c in self.manifest.components)


@dataclass(frozen=True)
class ReleasesPage:
    targets_version: int
    targets_expires: datetime
    releases: list[ReleaseRow]


def releases_page(ctx: ServerContext) -> ReleasesPage:
    if not ctx.repo.ready:
        raise NotReady("the repository has no signed metadata yet", hint="run `edgeship server init --data-dir DIR --workspace WS`")
    targets = ctx.repo.repo.targets()
    files = ctx.repo.repo.all_targets()
    rows = []
    for entry in ctx.repo.releases():
        manifest = Manifest.from_bytes(ctx.storage.read(entry["path"]))
        # Releases signed before rollback_allowed existed name only rollback_to.
        allowed = entry.get("rollback_allowed") or [v for v in [entry.get("rollback_to")] if v]
        rows.append(ReleaseRow(rollouts.ref_of(entry), entry["release_id"], allowed, manifest, deltas_to(files, manifest)))
    rows.sort(key=lambda r: (r.manifest.name, parse_version(r.manifest.version)), reverse=True)
    return ReleasesPage(targets.signed.version, targets.signed.expires, rows)


@dataclass(frozen=True)
class RolloutCard:
    rollout: ro_schemas.RolloutOut
    chart: Chart

    @property
    def actions(self) -> list[str]:
        """The buttons worth showing; ``rollouts.act`` still refuses what the state does not allow."""
        status = RolloutStatus(self.rollout.status)
        if status.is_final:
            return []
        return ["resume" if status is RolloutStatus.PAUSED else "pause", "promote", "abort"]


def rollouts_page(ctx: ServerContext) -> list[RolloutCard]:
    now = time.time()
    until = datetime.fromtimestamp(now, timezone.utc)
    with ctx.db.read() as session:
        cards = []
        for r in rollouts.list_rollouts(session, now):
            # A finished rollout's chart ends when it last changed, not at the reader's clock.
            end = r.updated_at if RolloutStatus(r.status).is_final else until
            cards.append(RolloutCard(r, chart(state_counts(session, r.release, r.created_at, end))))
    return cards


def act_on_rollout(ctx: ServerContext, rollout_id: str, action: str, reason: str, rollback: bool) -> ro_schemas.RolloutOut:
    with ctx.db.write() as session:
        return rollouts.act(session, rollout_id, action, ro_schemas.RolloutAction(reason=reason or None, rollback=rollback), time.time())


def experiments_page(ctx: ServerContext) -> list[ro_schemas.ExperimentOut]:
    with ctx.db.read() as session:
        return experiments.list_experiments(session, time.time())


@dataclass(frozen=True)
class FederatedCard:
    run: dict[str, Any]  # federated.describe()
    losses: Chart  # mean loss before and after local training, per round that had updates


def federated_page(ctx: ServerContext) -> list[FederatedCard]:
    with ctx.db.write() as session:  # reading may close a round whose deadline passed
        runs = federated.list_runs(session, ctx.settings.data_dir)
    cards = []
    for run in runs:
        measured = [r for r in run["rounds"] if r["loss_before"] is not None and r["loss_after"] is not None]
        cards.append(FederatedCard(run, chart({"loss_before": [r["loss_before"] for r in measured],
                                               "loss_after": [r["loss_after"] for r in measured]})))
    return cards
