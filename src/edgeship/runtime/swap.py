"""Hot swap: which loaded release answers new requests, and retiring the old one safely.

Every request holds a :class:`Lease` on the release that answers it, for as long as it
runs (a streamed answer until its last chunk). A swap loads the new release beside the
old one, then switches in one step under the lock; the old release is freed by whoever
drops its last lease. So a request never sees a model closed under it, and no request
waits for a swap unless memory forces the old release out before the new one loads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel

from edgeship.errors import RuntimeBackendError
from edgeship.runtime.release import LoadedRelease, PreparedRelease
from edgeship.runtime.rss import return_free_memory


class NotReadyError(RuntimeBackendError):
    """No release is loaded right now (starting, or a drain-first swap is under way)."""


class SwapOutcome(BaseModel):
    release_id: str
    previous_release_id: str | None
    changed: bool  # False: that release was already serving
    load_seconds: float  # loading the new release's models, their warm-up included
    swap_seconds: float  # from the call until the old release was freed (or the drain timed out)
    drain_first: bool  # memory forced the old release out before the new one loaded
    not_ready_seconds: float  # how long no release answered (0 unless drain_first)
    old_freed: bool  # False: requests still ran on the old release at drain timeout; freed when they end
    plans: dict[str, dict[str, Any]] = {}  # component -> the backend plan it runs with (GPU layers, providers)
    # Where swap_seconds went: prepare, then load (warm-up within it), the new release serves
    # from serving_seconds on; then the old release drains its requests and is freed.
    prepare_seconds: float = 0.0  # reading the new release's manifest and model headers
    warmup_seconds: float = 0.0  # of load_seconds: the first inference of each loaded model
    serving_seconds: float = 0.0  # from the call until new requests went to the new release
    drain_seconds: float = 0.0  # then until the old release's last request ended
    free_seconds: float = 0.0  # then freeing the old release's models
    cpu_seconds: float = 0.0  # CPU time the swapping thread spent until the new release served (llama.cpp loads in it)
    shared: list[str] = []  # models that run on the old release's loaded model (same GGUF bytes): not loaded


@dataclass(eq=False)
class _Slot:
    release: LoadedRelease
    prepared: PreparedRelease  # kept to load it again if a drain-first swap fails
    inflight: int = 0
    retired: bool = False
    closing: bool = False
    closed: threading.Event = field(default_factory=threading.Event)
    retired_at: float = 0.0  # perf_counter when it was retired (no longer the serving slot): its drain starts here
    idle_at: float = 0.0  # perf_counter when, retired, its last request ended
    freed_at: float = 0.0  # perf_counter when its models were freed


class Lease:
    """The right to use one loaded release until :meth:`close` (idempotent)."""

    def __init__(self, host: ModelHost, slot: _Slot) -> None:
        self.release = slot.release
        self._host, self._slot, self._open = host, slot, True

    def close(self) -> None:
        if self._open:
            self._open = False
            self._host._drop(self._slot)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Preparer = Callable[[Path, PreparedRelease | None], PreparedRelease]  # the release's directory, the one serving now
Loader = Callable[[PreparedRelease, LoadedRelease | None], LoadedRelease]  # the release and the one serving now


class ModelHost:
    def __init__(self, preparer: Preparer, loader: Loader, *, memory_budget: int | None = None,
                 ready_wait_s: float = 30.0, drain_timeout_s: float = 120.0) -> None:
        self._prepare, self._load = preparer, loader
        self.memory_budget = memory_budget
        self.ready_wait_s = ready_wait_s
        self.drain_timeout_s = drain_timeout_s
        self._cond = threading.Condition()
        self._swap_lock = threading.Lock()  # one swap at a time; requests never take it
        self._active: _Slot | None = None
        self.last_error: str | None = None

    # -- requests -------------------------------------------------------------------------

    def lease(self) -> Lease:
        """A lease on the serving release; waits up to ``ready_wait_s`` while none is loaded."""
        deadline = time.monotonic() + self.ready_wait_s
        with self._cond:
            while self._active is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NotReadyError("no model is loaded right now" + (f": {self.last_error}" if self.last_error else ""),
                                        hint="retry shortly; GET /readyz says when the runtime is ready")
                self._cond.wait(remaining)
            self._active.inflight += 1
            return Lease(self, self._active)

    def _drop(self, slot: _Slot) -> None:
        with self._cond:
            slot.inflight -= 1
            close = self._claim_close(slot)
        if close:
            self._free(slot)

    def _claim_close(self, slot: _Slot) -> bool:
        # Under the lock: exactly one caller frees a retired, idle slot.
        if slot.retired and slot.inflight == 0 and not slot.closing:
            slot.closing = True
            slot.idle_at = time.perf_counter()
            return True
        return False

    def _free(self, slot: _Slot) -> None:
        try:
            slot.release.close()
            return_free_memory()
        finally:
            slot.freed_at = time.perf_counter()
            slot.closed.set()

    # -- state ----------------------------------------------------------------------------

    @property
    def current(self) -> LoadedRelease | None:
        with self._cond:
            return self._active.release if self._active else None

    def _install(self, slot: _Slot | None) -> None:
        with self._cond:
            self._active = slot
            self._cond.notify_all()

    def _retire(self, slot: _Slot) -> bool:
        """Stop new leases on ``slot`` and free it once idle; True if freed within the drain timeout."""
        with self._cond:
            slot.retired, slot.retired_at = True, time.perf_counter()
            close = self._claim_close(slot)
        if close:
            self._free(slot)
        return slot.closed.wait(self.drain_timeout_s)

    # -- swapping -------------------------------------------------------------------------

    def swap(self, directory: Path, *, reload: bool = False) -> SwapOutcome:
        """Serve the release at ``directory``; on failure the old one keeps serving and this raises.

        ``reload``: load it again even if it is serving (its plan changed).
        """
        with self._swap_lock:
            started, cpu_started = time.perf_counter(), time.thread_time()
            old = self._active
            if not reload and old is not None and old.release.directory == directory:
                return SwapOutcome(release_id=old.release.release_id, previous_release_id=old.release.release_id,
                                   changed=False, load_seconds=0.0, swap_seconds=0.0, drain_first=False,
                                   not_ready_seconds=0.0, old_freed=False)
            try:
                prepared = self._prepare(directory, old.prepared if old is not None else None)
            except RuntimeBackendError as exc:
                self.last_error = f"cannot size release {directory.name[:12]}: {exc}"
                raise
            prepare_seconds = time.perf_counter() - started
            if (old is not None and self.memory_budget is not None
                    and old.prepared.memory + prepared.memory_beside(old.release) > self.memory_budget):
                return self._swap_drain_first(old, prepared, (started, cpu_started), prepare_seconds)
            new = self._load_or_report(prepared, old.release if old is not None else None)
            self._install(new)
            serving = (time.perf_counter(), time.thread_time())
            freed = self._retire(old) if old is not None else True
            return self._outcome(new, old, (started, cpu_started), prepare_seconds, serving, drain_first=False,
                                 not_ready=0.0, freed=freed)

    def _load_or_report(self, prepared: PreparedRelease, beside: LoadedRelease | None) -> _Slot:
        try:
            release = self._load(prepared, beside)
        except RuntimeBackendError as exc:
            self.last_error = f"loading release {prepared.directory.name[:12]} failed: {exc}"
            raise
        self.last_error = None
        return _Slot(release, prepared)

    def _swap_drain_first(self, old: _Slot, prepared: PreparedRelease, started: tuple[float, float],
                          prepare_seconds: float) -> SwapOutcome:
        # Both releases do not fit: stop taking requests (they wait, up to ready_wait_s),
        # let the old one finish and free it, then load the new one into the room it left.
        gap = time.perf_counter()
        self._install(None)
        if not self._retire(old):
            with self._cond:
                if not old.closing:  # still busy: put it back rather than overcommit memory
                    old.retired = False
                    self._active = old
                    self._cond.notify_all()
                    raise RuntimeBackendError(
                        f"requests on the old release did not finish within {self.drain_timeout_s:g}s; swap not done",
                        hint="retry the swap when the device is less busy, or raise --drain-timeout")
            old.closed.wait()
        try:
            new = self._load_or_report(prepared, None)
        except RuntimeBackendError as exc:
            self._install(self._load_or_report(old.prepared, None))
            self.last_error = (f"loading release {prepared.directory.name[:12]} failed ({exc.message}); "
                               f"serving {old.release.release_id[:12]} again")
            raise
        self._install(new)
        serving = (time.perf_counter(), time.thread_time())
        return self._outcome(new, old, started, prepare_seconds, serving, drain_first=True,
                             not_ready=serving[0] - gap, freed=True)

    def _outcome(self, new: _Slot, old: _Slot | None, started_at: tuple[float, float], prepare_seconds: float,
                 serving_at: tuple[float, float], *, drain_first: bool, not_ready: float, freed: bool) -> SwapOutcome:
        """The outcome of a swap that began at ``started_at`` and served from ``serving_at`` ((wall, thread CPU) each)."""
        (started, cpu_started), (serving, cpu_serving) = started_at, serving_at
        ended = time.perf_counter()
        drain = free = 0.0
        if old is not None:
            drain = (old.idle_at if freed else ended) - old.retired_at
            free = old.freed_at - old.idle_at if freed else 0.0
        release = new.release
        return SwapOutcome(release_id=release.release_id,
                           previous_release_id=old.release.release_id if old else None, changed=True,
                           load_seconds=release.load_seconds, swap_seconds=ended - started,
                           drain_first=drain_first, not_ready_seconds=not_ready, old_freed=freed,
                           plans={name: b.plan.to_json() for name, b in release.backends.items()},
                           prepare_seconds=prepare_seconds, warmup_seconds=release.warmup_seconds,
                           serving_seconds=serving - started, drain_seconds=drain, free_seconds=free,
                           cpu_seconds=cpu_serving - cpu_started, shared=list(release.shared))

    def close(self) -> None:
        """Stop serving and free the loaded release once its requests end."""
        with self._swap_lock:
            old = self._active
            self._install(None)
            if old is not None:
                self._retire(old)
