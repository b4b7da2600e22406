"""The agent: check in, run the assigned release through the state machine, report.

Order inside every step (see `edgeship.agent.machine` for the rules):
1. journal ``begin`` (fsynced), 2. queue the state event, 3. do the work (idempotent),
4. journal ``end`` with the outcome. A crash anywhere restarts the step it was in.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeship.agent.api import CheckinReply, DeviceClient, device_facts, load_identity, save_identity
from edgeship.agent.backoff import Backoff
from edgeship.agent.config import AgentConfig
from edgeship.agent.download import Downloader
from edgeship.agent.events import Event, EventQueue, step_event_id
from edgeship.agent.federated import take_part
from edgeship.agent.fetcher import ResumableFetcher
from edgeship.agent.journal import Assignment, Journal, JournalEntry
from edgeship.agent.push import PushListener
from edgeship.agent.reserve import SpaceReserve
from edgeship.agent.wakeup import Wakeup
from edgeship.agent.machine import Phase, State, StepOutcome, check_downgrade, next_state, recover
from edgeship.agent.store import CURRENT, PREVIOUS, DeviceStore, FsckReport
from edgeship.agent.trial import run_trial, runtime_restore, runtime_trial
from edgeship.errors import AgentError, EdgeshipError, NotFoundError, ServerError, StoreError, TrustError, ValidationError
from edgeship.release.manifest import Manifest, require_bases
from edgeship.store.digest import Digest, hash_file
from edgeship.store.fsutil import sweep_temps, write_atomic
from edgeship.trust.targets import rollback_versions
from edgeship.trust.client import ROOT_FILE, ReleaseVerifier, keep_root

log = logging.getLogger("edgeship.agent")

# Failures that say "this release must not be installed here": not retried by themselves.
_REFUSALS = (TrustError, NotFoundError, ValidationError)


class _Wait(Exception):
    """A step cannot go on before ``until`` (the maintenance window); it is re-run then."""

    def __init__(self, until: float) -> None:
        super().__init__(until)
        self.until = until


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Agent:
    def __init__(self, config: AgentConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.paths = config.paths
        self.store = DeviceStore(self.paths.root)
        self.reserve = SpaceReserve(self.paths.reserve)
        self.journal = Journal(self.paths.journal, self.reserve.write_atomic)
        self.events = EventQueue(self.paths.events, self.reserve.write_atomic)
        self.clock = clock
        self.zone = config.zone_name()
        self.identity = load_identity(self.paths.identity)
        self.api: DeviceClient | None = None
        self.repo_url: str | None = None
        self._verifier: ReleaseVerifier | None = None
        self._fetcher: ResumableFetcher | None = None
        self._stop = threading.Event()
        self._wakeup = Wakeup()  # brought forward by push notices and by stop
        self.push = (PushListener(config.mqtt_url, config.mqtt_ca, config.push_poll_interval_s, self.wake,
                                  reconnect_spread_s=config.push_reconnect_spread_s)
                     if config.mqtt_url else None)
        self._failed_rounds = 0
        self._wait_until: float | None = None
        self._progress: dict[str, int] = {}
        self._status_written = 0.0
        self.last_error: str | None = self._read_status().get("last_error")

    # -- process-level ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        with open(self.paths.lock, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise AgentError(f"another agent is running on {self.paths.root}", hint="stop it first (one agent per data dir)") from exc
            yield

    def _sweep_temps(self) -> None:
        """Delete the temps of writes a kill cut short (the files they were to replace are intact)."""
        p = self.paths
        swept = [t for f in (p.journal, p.status, p.identity) for t in sweep_temps(p.root, f.name)]
        swept += sweep_temps(p.events) + sweep_temps(self.store.manifest_dir)
        if swept:
            log.info("removed %d temp files left by interrupted writes", len(swept))

    def stop(self, *_: Any) -> None:
        """SIGTERM: finish the step in flight (the journal makes stopping anywhere safe anyway)."""
        self._stop.set()
        self._wakeup.request(0)

    def wake(self, within_s: float = 0.0) -> None:
        """Check in within ``within_s`` seconds rather than at the end of the poll interval."""
        self._wakeup.request(within_s)

    def run(self, *, once: bool = False) -> JournalEntry | None:
        """Recover, then check in and work until stopped (``once``: a single round)."""
        signal.signal(signal.SIGTERM, self.stop)
        if self.config.root_file is None and not (self.paths.trust / ROOT_FILE).exists():
            # Checked up front: without it every release would be refused as untrusted.
            raise AgentError("no trusted root for the release repository",
                             hint="start the agent once with --root (the operator's repository/metadata/1.root.json)")
        with self._locked():
            self._sweep_temps()
            self._fill_reserve()  # before recovery: finishing a switch writes the journal
            if self.config.root_file is not None and keep_root(self.paths.trust, self.config.root_file.read_bytes()):
                log.info("trusting the root in %s from now on", self.config.root_file)
            self._recover_local()
            try:
                while True:
                    delay = self.round()
                    if once or self._stop.is_set():
                        break
                    self._wakeup.wait(delay)  # a notice arriving during the round wakes the next wait
                    if self._stop.is_set():
                        break
            finally:
                if self.push is not None:
                    self.push.close()
            return self.journal.read()

    # -- one round: report, check in, work ------------------------------------------------------

    def round(self) -> float:
        """One check-in and whatever work it leads to; returns the seconds until the next."""
        poll = self.config.poll_interval_s
        try:
            self._fill_reserve()
            self._connect()
            self._flush()
            reply = self._checkin()
            poll = reply.poll_interval_s
            self._follow_push(reply.tags)
            self.repo_url = self.api.server_url + "/" + reply.repo_path.strip("/") + "/"
            entry = self.work(reply.assignment)
            if self.config.learn_data is not None and (entry is None or entry.step.terminal):
                self._learn()
            self._flush()
            self._failed_rounds = 0
            # Only now: a job that failed retries on the backoff below, not after the long push poll.
            if self.push is not None:
                poll = self.push.poll_interval(poll)
            log.debug("round done: %s", entry.step.value if entry else "idle")
        except EdgeshipError as exc:
            # Expected failures (server away, disk full, a bad answer): report and try again
            # later; the journal keeps the job where it was. Backing off with jitter keeps a
            # fleet that lost its server from returning all at once.
            self.last_error = str(exc)
            log.warning("%s", exc)
            self._failed_rounds += 1
            backoff = Backoff(self.config.poll_interval_s, self.config.backoff_cap_s)
            poll = max(poll, backoff.delay(self._failed_rounds, random.random()))
        self._write_status(force=True)
        if self._wait_until is not None:
            poll = min(poll, max(1.0, self._wait_until - self.clock()))
        return poll

    def _learn(self) -> None:
        """A federated round, between installs: its failure is logged and never stops updates."""
        assert self.api is not None and self.config.learn_data is not None
        try:
            take_part(self.api, self.store, self.config.learn_data, self.paths.learn)
        except EdgeshipError as exc:
            self.last_error = str(exc)
            log.warning("federated round: %s", exc)

    def _fill_reserve(self) -> None:
        if not self.reserve.fill():
            log.warning("the disk is full: no room to reserve %d bytes for the agent's records yet", self.reserve.size)

    def _follow_push(self, tags: dict[str, str]) -> None:
        """Listen to this device's notify topics; push is an extra, so its failure never stops the work."""
        if self.push is None or self.identity is None:
            return
        try:
            self.push.follow(self.identity, tags)
        except EdgeshipError as exc:
            log.warning("push: %s; polling at the server's interval", exc)

    def _connect(self) -> None:
        if self.api is not None:
            return
        server = self.config.server_url or (self.identity.server_url if self.identity else None)
        if not server:
            raise AgentError("no server URL", hint="pass --server URL")
        ca = str(self.config.ca) if self.config.ca else None
        api = DeviceClient(server, ca=ca, timeout=self.config.http_timeout_s, identity=self.identity)
        if self.identity is None:
            if not self.config.enroll_token:
                raise AgentError("this device is not enrolled", hint="start the agent once with --enroll-token TOKEN")
            self.identity = api.enroll(self.config.enroll_token, device_facts(self.zone, self.config.facts), self.config.tags)
            save_identity(self.paths.identity, self.identity)
            log.info("enrolled as %s", self.identity.device_id)
        self.api = api

    def _flush(self) -> None:
        self.events.flush(self._send)

    def _send(self, batch: list[dict[str, Any]]) -> None:
        assert self.api is not None
        accepted, duplicates = self.api.post_events(batch)
        if duplicates:
            # Expected after a crash between the server's answer and deleting the queue files.
            log.info("server already had %d of %d events", duplicates, accepted + duplicates)

    def _checkin(self) -> CheckinReply:
        assert self.api is not None
        entry = self.journal.read()
        state = entry.step.value if entry is not None else State.IDLE.value
        return self.api.checkin(self.store.describe(self.store.link(CURRENT)), self.store.describe(self.store.link(PREVIOUS)),
                                state, device_facts(self.zone, self.config.facts))

    def work(self, assignment: Assignment | None) -> JournalEntry | None:
        """Act on the server's answer: go on with the job in flight, or start one for ``assignment``."""
        entry = self.journal.read()
        self._wait_until = None
        if entry is not None and not (entry.step.terminal and entry.phase is Phase.END):
            # Until the switch, the operator may change their mind: a job for a release the
            # server no longer assigns is dropped (its downloads stay for a later GC).
            if not (entry.step.before_switch and (assignment is None or assignment.release_id != entry.assignment.release_id)):
                return self._continue(entry)
            why = f"superseded by {assignment.ref}" if assignment else "the server withdrew the assignment"
            entry = self.run_job(entry, State.FAILED, why)
        if assignment is None or not self._wanted(assignment, entry):
            return entry
        return self.run_job(self._new_job(assignment, entry), State.ASSIGNED)

    def _wanted(self, a: Assignment, last: JournalEntry | None) -> bool:
        if a.release_id == self.store.link(CURRENT):
            return False
        if last is not None and a.key in last.rejected:
            log.info("not installing %s again: %s", a.ref, last.rejected[a.key])
            return False
        return True

    def _new_job(self, a: Assignment, last: JournalEntry | None) -> JournalEntry:
        now = self.clock()
        if a.window or a.notice_s:
            # Imported only when needed: the rollout package pulls in numpy, which would
            # more than double an idle agent's memory.
            from edgeship.rollout.window import MaintenanceWindow, next_switch_time

            window = MaintenanceWindow.parse(f"{a.window['start']}-{a.window['end']}") if a.window else None
            switch_at = next_switch_time(now, window, self.zone, a.notice_s)
        else:
            switch_at = now
        return JournalEntry(
            job=str(uuid.uuid4()),
            step=State.ASSIGNED,
            phase=Phase.BEGIN,
            assignment=a,
            from_release=self.store.link(CURRENT),
            from_previous=self.store.link(PREVIOUS),
            notified_at=now,
            switch_at=switch_at,
            rejected=dict(last.rejected) if last else {},
            seq=last.seq if last else 0,
        )

    # -- recovery -------------------------------------------------------------------------------

    def _recover_local(self) -> None:
        """At start, before any network: finish a switch, trial, commit or rollback in flight.

        Steps before the switch need the server and are resumed by the next round.
        """
        entry = self.journal.read()
        if entry is None:
            return
        resume = self._resume_point(entry)
        if resume is not None and not resume[0].before_switch:
            log.info("recovering: %s %s was in flight, continuing at %s", entry.step.value, entry.phase.value, resume[0].value)
            self.run_job(entry, *resume)

    def _resume_point(self, entry: JournalEntry) -> tuple[State, str | None] | None:
        r = recover(entry.step, entry.phase, entry.outcome, trial_round=entry.trial_round,
                    trial_attempts=self.config.trial_attempts, verify_round=entry.verify_round,
                    verify_attempts=self.config.verify_attempts)
        return None if r is None else (r.state, r.reason)

    def _continue(self, entry: JournalEntry) -> JournalEntry:
        resume = self._resume_point(entry)
        return entry if resume is None else self.run_job(entry, *resume)

    # -- the job ------------------------------------------------------------------------------

    def run_job(self, entry: JournalEntry, state: State, reason: str | None = None) -> JournalEntry:
        """Drive a job from ``state`` until it ends or has to wait for its window."""
        while True:
            entry = self._begin(entry, state, reason)
            try:
                outcome = self._do(entry)
            except _Wait as wait:
                self._wait_until = wait.until
                self._write_status(force=True)
                return entry
            entry = self.journal.write(entry.at(state, Phase.END, outcome=outcome))
            self._write_status(force=True)
            if outcome.retry:
                log.warning("%s: %s; downloading again", entry.assignment.ref, outcome.reason)
            if state.terminal:
                return entry
            nxt = next_state(state, outcome, verify_round=entry.verify_round, verify_attempts=self.config.verify_attempts)
            if state is State.VERIFYING and nxt is State.DOWNLOADING:
                entry = replace(entry, verify_round=entry.verify_round + 1)
            state, reason = nxt, outcome.reason

    def _begin(self, entry: JournalEntry, state: State, reason: str | None) -> JournalEntry:
        terminal_outcome = StepOutcome(ok=state is State.COMMITTED, reason=reason)
        changes: dict[str, Any] = {"outcome": terminal_outcome if state.terminal else None}
        if state is State.TRIAL:
            changes["trial_round"] = entry.trial_round + 1
        if state is State.FAILED and entry.outcome is not None and entry.outcome.refused:
            changes["rejected"] = {**entry.rejected, entry.assignment.key: reason or "refused"}
        if state is State.ROLLED_BACK:
            changes["rejected"] = {**entry.rejected, entry.assignment.key: reason or "rolled back"}
        entry = self.journal.write(entry.at(state, Phase.BEGIN, **changes))
        round_ = entry.trial_round if state is State.TRIAL else entry.verify_round
        data: dict[str, Any] = {"job": entry.job}
        if reason and state.terminal:
            data["reason"] = reason
        if state is State.ASSIGNED:
            data.update(switch_at=_iso(entry.switch_at), rollout_id=entry.assignment.rollout_id)
        self.events.put(Event(type="state", state=state.value, release=entry.assignment.ref, data=data,
                              id=step_event_id(entry.job, state.value, round_)))
        if state is State.ASSIGNED and entry.switch_at is not None and entry.switch_at > entry.notified_at:
            log.info("notice: %s will be switched to at %s", entry.assignment.ref, _iso(entry.switch_at))
        if state in (State.FAILED, State.ROLLED_BACK):
            self.last_error = f"{entry.assignment.ref} {state.value}: {reason}"
            log.warning("%s %s: %s", entry.assignment.ref, state.value, reason)
        else:
            if state is State.COMMITTED:
                self.last_error = None
            log.info("%s: %s", entry.assignment.ref, state.value)
        return entry

    def _do(self, entry: JournalEntry) -> StepOutcome:
        step = entry.step
        try:
            if step is State.ASSIGNED:
                return StepOutcome()
            if step is State.WAITING_WINDOW:
                if not self.config.download_early:
                    self._wait_for_switch(entry)
                return StepOutcome()
            if step is State.DOWNLOADING:
                return self._download(entry)
            if step is State.VERIFYING:
                return self._verify(entry)
            if step is State.STAGED:
                self.store.stage(entry.assignment.release_id)
                self._wait_for_switch(entry)
                return StepOutcome()
            if step is State.SWITCHING:
                self.store.switch(entry.assignment.release_id, entry.from_release)
                return StepOutcome()
            if step is State.TRIAL:
                result = run_trial(self.store.release_dir(entry.assignment.release_id), parse_timeout_s=self.config.trial_timeout_s)
                if result.ok and self.config.runtime_url:
                    result = runtime_trial(self.config.runtime_url, self.paths.root, self.store.manifest(entry.assignment.release_id),
                                           entry.assignment.release_id)
                    if result.plans is not None:  # where the runtime runs each model (GPU layers, providers)
                        self.events.put(Event(type="health", release=entry.assignment.ref, data={"plan": result.plans},
                                              id=step_event_id(entry.job, "runtime-plan", entry.trial_round)))
                return StepOutcome(ok=result.ok, reason=result.reason)
            return self._finish(entry)
        except _REFUSALS as exc:
            return StepOutcome(ok=False, reason=str(exc), refused=True)
        except (ServerError, StoreError, AgentError) as exc:
            return StepOutcome(ok=False, reason=str(exc))
        except OSError as exc:
            return StepOutcome(ok=False, reason=f"{exc.strerror or exc} ({exc.filename or 'the data dir'})")

    def _wait_for_switch(self, entry: JournalEntry) -> None:
        if entry.switch_at is not None and self.clock() < entry.switch_at:
            raise _Wait(entry.switch_at)

    def _finish(self, entry: JournalEntry) -> StepOutcome:
        if entry.step is State.ROLLED_BACK:
            self.store.restore(entry.from_release, entry.from_previous)
            if self.config.runtime_url:
                runtime_restore(self.config.runtime_url, self.paths.root, entry.from_release)
        if entry.step is not State.FAILED:
            # Keep what the device can run or roll back to; the rest (releases older than
            # `previous`, their blobs, stale partial downloads) goes.
            keep = {r for r in (self.store.link(CURRENT), self.store.link(PREVIOUS)) if r}
            removed = self.store.gc(keep)
            if removed:
                log.info("garbage-collected %d items", len(removed))
        return StepOutcome(ok=True, reason=entry.outcome.reason if entry.outcome else None)

    # -- downloading and verifying ------------------------------------------------------------

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
        self._fetcher = self._verifier = None

    def verifier(self) -> ReleaseVerifier:
        """A verifier with freshly refreshed metadata for this job (python-tuf refreshes once per Updater)."""
        if self._verifier is None:
            if self.repo_url is None:
                raise ServerError("no repository URL yet", hint="the agent learns it from its first check-in")
            root = self.config.root_file.read_bytes() if self.config.root_file else None
            self._fetcher = ResumableFetcher(
                verify=str(self.config.ca) if self.config.ca else True,
                headers=self.identity.headers if self.identity else None,
                timeout=self.config.http_timeout_s,
                max_rate=self.config.max_rate,
                min_rate=self.config.min_rate or None,
                rate_window_s=self.config.rate_window_s,
                metadata_timeout_s=self.config.metadata_timeout_s,
                attempts=self.config.download_attempts,
                backoff=Backoff(self.config.backoff_base_s, self.config.backoff_cap_s),
            )
            self._verifier = ReleaseVerifier(self.repo_url, self.paths.trust, root, fetcher=self._fetcher)
            self._verifier.refresh()
        return self._verifier

    def _download(self, entry: JournalEntry) -> StepOutcome:
        a = entry.assignment
        self.close()  # each download starts from freshly verified metadata
        verifier = self.verifier()
        record = verifier.release_record(a.name, a.version)
        if record.get("release_id") != a.release_id:
            raise TrustError(f"the server assigned {a.ref} as {a.release_id[:12]}, but the signed release is "
                             f"{str(record.get('release_id'))[:12]}", hint="the server's registry and repository disagree; do not install")
        self._check_downgrade(verifier, entry)
        manifest = verifier.manifest(a.name, a.version, self.paths.tmp)
        facts = device_facts(self.zone, self.config.facts)
        unmet = manifest.requirements.unmet_by(facts["ram"], facts["arch"], facts["accelerator"])
        if unmet:
            raise ValidationError(f"{a.ref} cannot run on this device: {'; '.join(unmet)}", hint="assign a release built for it")
        require_bases(manifest, self.store.has_blob)  # before any byte of it is downloaded
        self.store.save_manifest(a.release_id, manifest.canonical_bytes())
        assert self._fetcher is not None
        running = self.store.manifest(entry.from_release) if entry.from_release else None
        report = Downloader(verifier, self._fetcher, self.store, self._on_progress,
                            keep_free=self.config.keep_free).fetch_missing(manifest, running)
        if report.full_size:
            self.events.put(Event(type="download", release=a.ref, data=report.to_dict(),
                                  id=step_event_id(entry.job, "download-report", entry.verify_round)))
        return StepOutcome()

    def _check_downgrade(self, verifier: ReleaseVerifier, entry: JournalEntry) -> None:
        running = self.store.describe(entry.from_release)
        if running is None:
            return
        try:
            allowed = rollback_versions(verifier.release_record(running["name"], running["version"]))
        except NotFoundError:
            allowed = []  # the running release is no longer signed: no rollback pre-approved
        check_downgrade((running["name"], running["version"]), (entry.assignment.name, entry.assignment.version),
                        signed_rollback=allowed, rollback_ordered=entry.assignment.rollback)

    def _on_progress(self, done: int, total: int) -> None:
        self._progress = {"done": done, "total": total}
        self._write_status()

    def _verify(self, entry: JournalEntry) -> StepOutcome:
        """Check every downloaded blob against the signed length and hash; adopt the good ones."""
        release_id = entry.assignment.release_id
        data = self.store.pending_manifest(release_id).read_bytes()
        if hashlib.sha256(data).hexdigest() != release_id:
            raise StoreError("the saved manifest does not match its release ID", hint="it is downloaded again")
        corrupt = []
        for c in Manifest.from_bytes(data).components:
            digest = Digest(c.hexdigest)
            if self.store.blobs.has(digest):
                continue
            partial = self.store.partial(digest)
            got, size = hash_file(partial) if partial.exists() else (None, -1)
            if got == digest and size == c.size:
                self.store.adopt(partial, digest)
            else:
                # Wrong bytes in transit or on disk: throw them away, never resume from them.
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
                corrupt.append(c.name)
        if corrupt:
            return StepOutcome(ok=False, retry=True, reason=f"downloaded bytes of {', '.join(corrupt)} do not match the signed hash")
        return StepOutcome()

    # -- local status ------------------------------------------------------------------------

    def _read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.paths.status.read_bytes())
        except (OSError, ValueError):
            return {}

    def _write_status(self, *, force: bool = False) -> None:
        """Atomically rewrite status.json for the device's own software (at most twice a second)."""
        now = time.monotonic()
        if not force and now - self._status_written < 0.5:
            return
        self._status_written = now
        data = json.dumps(status_document(self), indent=2, sort_keys=True).encode()
        try:
            # Progress is not worth the reserve: a download filling the disk would spend it
            # before the journal could record the failure.
            (self.reserve.write_atomic if force else write_atomic)(self.paths.status, data, 0o644)
        except (StoreError, OSError) as exc:
            log.warning("cannot update %s: %s", self.paths.status.name, exc)  # a view of the journal, which holds the truth


def status_document(agent: Agent) -> dict[str, Any]:
    entry = agent.journal.read()
    store = agent.store
    doc: dict[str, Any] = {
        "device_id": agent.identity.device_id if agent.identity else None,
        "state": entry.step.value if entry else State.IDLE.value,
        "current": store.describe(store.link(CURRENT)),
        "previous": store.describe(store.link(PREVIOUS)),
        "last_error": agent.last_error,
        "queued_events": len(agent.events),
        "updated": _iso(agent.clock()),
        "job": None,
    }
    if entry is not None and not (entry.step.terminal and entry.phase is Phase.END):
        doc["job"] = {
            "id": entry.job,
            "release": entry.assignment.ref,
            "release_id": entry.assignment.release_id,
            "step": entry.step.value,
            "phase": entry.phase.value,
            "rollback": entry.assignment.rollback,
            # The notice: the device's own software can tell its user when the switch happens.
            "switch_at": _iso(entry.switch_at),
            "window": entry.assignment.window,
            "download": dict(agent._progress) if entry.step is State.DOWNLOADING else None,
        }
    return doc


def read_status(data_dir: Path) -> dict[str, Any]:
    """The status an agent last wrote, refreshed with what is on disk now (no agent needed)."""
    agent = Agent(AgentConfig(data_dir=data_dir))
    doc = agent._read_status()
    doc.update({k: v for k, v in status_document(agent).items() if k not in ("updated", "job", "last_error")})
    return doc


def fsck_data_dir(data_dir: Path, *, repair: bool) -> FsckReport:
    """`DeviceStore.fsck` plus the journal: a damaged journal is reported (and moved aside)."""
    report = DeviceStore(data_dir).fsck(repair=repair)
    journal = Journal(AgentConfig(data_dir=data_dir).paths.journal)
    try:
        journal.read()
    except AgentError as exc:
        report.problems.append(exc.message)
        if repair:
            report.repaired.append(f"moved the damaged journal to {journal.quarantine().name}")
    return report
