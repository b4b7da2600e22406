"""A/B experiments on the server: two releases on two stable cohorts, compared on demand.

The rollout job materializes each targeted device's arm like a rollout's assignments
(``rollouts.materialize``); ``status`` gathers installs, latency and feedback ratings
and asks ``edgeship.rollout.evaluate`` which release is better.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from edgeship.errors import RolloutError, UsageError
from edgeship.rollout import (
    Assignment,
    AssignmentReason,
    Experiment,
    Selector,
    collect,
    evaluate,
)
from edgeship.server import rollout_schemas as schemas
from edgeship.server.credentials import new_id
from edgeship.server.models import Event, RolloutRecord
from edgeship.server.reports import device_views
from edgeship.server.repository import ServerRepository
from edgeship.server.rollouts import (
    EXPERIMENT,
    find_release,
    get_record,
    materialize,
    ref_of,
    utc,
)
from edgeship.units import parse_duration


def experiment_of(record: RolloutRecord) -> Experiment:
    d = record.document
    return Experiment(
        id=record.id, release_a=record.release_id, release_b=record.previous_release_id or "", split=d["split"],
        target=Selector.parse(record.target), started=d["started"], duration=d["duration"],
    )


def start(session: Session, repo: ServerRepository, req: schemas.ExperimentCreate, now: float) -> schemas.ExperimentOut:
    a, b = find_release(repo, req.release_a), find_release(repo, req.release_b)
    try:
        experiment = Experiment(
            id=new_id("ab"), release_a=a["release_id"], release_b=b["release_id"], split=req.split / 100,
            target=Selector.parse(req.target), started=now, duration=parse_duration(req.duration),
        )
    except RolloutError as exc:
        raise UsageError(exc.message, hint=exc.hint) from exc
    record = RolloutRecord(
        id=experiment.id, kind=EXPERIMENT, release_ref=ref_of(a), release_id=a["release_id"], previous_ref=ref_of(b),
        previous_release_id=b["release_id"], target=str(experiment.target), status="running", live=True,
        document={"split": experiment.split, "started": now, "duration": experiment.duration}, summary={},
        created_at=utc(now), updated_at=utc(now),
    )
    session.add(record)
    session.flush()
    assign(session, record, now)
    return status(session, record.id, now)


def assign(
    session: Session, record: RolloutRecord, now: float, arms: Mapping[str, str] | None = None, changed: Collection[str] | None = None
) -> list[str]:
    """Give every targeted device its arm's release; after the experiment ends the rows stay as they are.

    ``arms`` (device → release, the job keeps one per experiment) stands for the fleet, else
    it is read in ``session``. ``changed`` (with ``arms``): the devices whose rows may be out
    of date; only theirs are looked at (an experiment's answers never change all at once).
    Returns the devices whose row it withdrew.
    """
    experiment = experiment_of(record)
    if arms is None:
        arms, changed = experiment.assign(device_views(session)), None
    answers = {r: Assignment(AssignmentReason.ASSIGNED, r) for r in (experiment.release_a, experiment.release_b)}
    ids = arms if changed is None else [d for d in changed if d in arms]
    wanted = {d: answers[arms[d]] for d in ids}
    refs = {record.release_id: record.release_ref, experiment.release_b: record.previous_ref or ""}
    withdrawn = materialize(session, record, wanted, refs, changed)
    finished = now >= experiment.started + experiment.duration
    record.status = "finished" if finished else "running"
    record.live = not finished
    record.updated_at = utc(now)
    return withdrawn


def status(session: Session, experiment_id: str, now: float) -> schemas.ExperimentOut:
    record = get_record(session, experiment_id, EXPERIMENT)
    experiment = experiment_of(record)
    views = device_views(session)
    refs = (record.release_ref, record.previous_ref)
    ratings: dict[str, list[float]] = {}
    for device_id, data in session.execute(select(Event.device_id, Event.data).where(Event.type == "feedback", Event.release.in_(refs))):
        if isinstance(data.get("rating"), int | float):
            ratings.setdefault(device_id, []).append(float(data["rating"]))
    arm_a, arm_b = collect(experiment, views, ratings)
    verdict = evaluate(experiment, arm_a, arm_b, now)
    arms = experiment.assign(views)
    return schemas.ExperimentOut(
        id=record.id,
        release_a=record.release_ref,
        release_b=record.previous_ref or "",
        split=experiment.split * 100,
        target=record.target,
        status=record.status,
        devices_a=sum(1 for r in arms.values() if r == experiment.release_a),
        devices_b=sum(1 for r in arms.values() if r == experiment.release_b),
        verdict=verdict.verdict,
        reason=verdict.reason,
        comparisons=[schemas.ComparisonOut(**vars(c)) for c in verdict.comparisons],
        created_at=record.created_at,
        ends_at=utc(experiment.started + experiment.duration),
    )


def list_experiments(session: Session, now: float) -> list[schemas.ExperimentOut]:
    query = select(RolloutRecord.id).where(RolloutRecord.kind == EXPERIMENT).order_by(RolloutRecord.created_at.desc())
    return [status(session, experiment_id, now) for experiment_id in session.scalars(query).all()]
