"""Downloads for the agent: HTTP Range resume, a bandwidth cap, jittered retries, slow-retrieval limits.

One fetcher serves both paths into the device:
* TUF metadata goes through python-tuf's ngclient, which calls ``_fetch`` (retried with
  backoff until the first byte arrives, then capped like everything else); each file must
  arrive within ``metadata_timeout_s`` of its response, or the refresh fails as too slow
  and the agent retries on its backoff;
* component blobs go through `download_to`, which appends to a partial file that
  survives restarts and resumes it with ``Range: bytes=<have>-``. The caller checks the
  result against the signed length and hash before it is used; the fetcher itself never
  writes more than the signed length (endless-data attack). A body averaging less than
  ``min_rate`` over a ``rate_window_s`` window is cut and resumed after a backoff
  (slow-retrieval attack, or a dying mirror).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from tuf.api.exceptions import DownloadError, DownloadHTTPError, SlowRetrievalError

from edgeship.agent.backoff import Backoff, RateBudget, RateFloor
from edgeship.agent.journal import CRASH_ENV
from edgeship.errors import ServerError, StoreError
from edgeship.trust.fetcher import HttpFetcher

log = logging.getLogger("edgeship.agent")

CHUNK = 64 * 1024  # small enough to pace a capped link smoothly and keep memory flat
SYNC_EVERY = 64 * 1024 * 1024  # fsync the partial now and then so a power cut loses little


@dataclass
class Fetched:
    """What `ResumableFetcher.download_to` did: bytes it moved, and bytes a partial file already had."""

    fetched: int = 0
    resumed: int = 0


class _Retryable(Exception):
    """A response worth trying again (5xx, 429, a Range answer that does not fit)."""


class _TooSlow(Exception):
    """The body arrives below the rate floor: tried again after a backoff, like a failure."""


def _crash_after_bytes() -> int | None:
    """Test hook: ``EDGESHIP_AGENT_CRASH_AT=download:<N>`` kills the agent once a partial holds N bytes."""
    for item in os.environ.get(CRASH_ENV, "").split(","):
        if item.startswith("download:"):
            return int(item.split(":", 1)[1])
    return None


class ResumableFetcher(HttpFetcher):
    def __init__(
        self,
        *,
        verify: str | bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        max_rate: int | None = None,
        min_rate: int | None = None,
        rate_window_s: float = 60.0,
        metadata_timeout_s: float | None = None,
        attempts: int = 8,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(verify=verify, timeout=timeout, headers=headers)
        self.max_rate = max_rate
        self.min_rate = min_rate
        self.rate_window_s = rate_window_s
        self.metadata_timeout_s = metadata_timeout_s
        self.attempts = attempts
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._rand = rand
        self._budget = RateBudget(max_rate, time.monotonic()) if max_rate else None
        self._crash_at = _crash_after_bytes()

    def _pace(self, nbytes: int) -> None:
        if self._budget is not None:
            pause = self._budget.spend(nbytes, time.monotonic())
            if pause > 0:
                self._sleep(pause)

    def _wait_before_retry(self, failures: int) -> None:
        self._sleep(self.backoff.delay(failures, self._rand()))

    @property
    def _chunk(self) -> int:
        # Under a cap, pace in pieces of ~1/20 s so the link is not used in bursts.
        return max(4096, min(CHUNK, self.max_rate // 20)) if self.max_rate else CHUNK

    def _blocks(self, response: httpx.Response, watch: Callable[[int], None]) -> Iterator[bytes]:
        """The body as it arrives, in blocks of at most `_chunk`; ``watch`` sees every read first.

        Not ``iter_bytes(chunk)``: that waits for a whole chunk, so a trickle of bytes
        would never reach a check.
        """
        try:
            for piece in response.iter_bytes():
                watch(len(piece))
                for i in range(0, len(piece), self._chunk):
                    yield piece[i : i + self._chunk]
        finally:
            response.close()

    # -- metadata, through ngclient --------------------------------------------------------

    def _fetch(self, url: str) -> Iterator[bytes]:
        for failures in range(self.attempts):
            last = failures == self.attempts - 1
            try:
                response = self._client.send(self._client.build_request("GET", url), stream=True)
            except httpx.TransportError:
                if last:
                    raise
                self._wait_before_retry(failures)
                continue
            if (response.status_code >= 500 or response.status_code == 429) and not last:
                response.close()
                self._wait_before_retry(failures)
                continue
            if response.status_code >= 400:
                response.close()
                raise DownloadHTTPError(f"GET {url} answered {response.status_code}", response.status_code)
            return self._paced(response, url)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _paced(self, response: httpx.Response, url: str) -> Iterator[bytes]:
        # From the response's head to its last byte: each read may come just inside the read
        # timeout and the file still take hours.
        deadline = time.monotonic() + self.metadata_timeout_s if self.metadata_timeout_s else None

        def watch(_: int) -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise SlowRetrievalError(f"{url.rsplit('/', 1)[-1]} took longer than {self.metadata_timeout_s:g} s")

        try:
            for block in self._blocks(response, watch):
                self._pace(len(block))
                yield block
        except httpx.TransportError as exc:
            # Raised while ngclient iterates, outside its own wrapping of fetch errors.
            raise DownloadError(f"{url.rsplit('/', 1)[-1]}: {type(exc).__name__}") from exc

    # -- blobs, resumable ------------------------------------------------------------------

    def download_to(self, url: str, dest: Path, length: int, progress: Callable[[int], None] | None = None) -> Fetched:
        """Make ``dest`` hold the first ``length`` bytes of ``url``, resuming what it has.

        Failures that make progress do not use up attempts: a flaky link that keeps
        delivering bytes finishes; one that delivers nothing ``attempts`` times in a row
        raises ServerError and leaves the partial file for the next try.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        failures = 0
        last_error = ""
        tally = Fetched(resumed=length)
        while True:
            have = dest.stat().st_size if dest.exists() else 0
            if have > length:
                os.truncate(dest, 0)  # longer than signed: not ours, start over
                have = 0
            tally.resumed = min(tally.resumed, have)
            if have == length:
                return tally
            before = tally.fetched
            try:
                self._get_range(url, dest, have, length, progress, tally)
                continue
            except _TooSlow as exc:
                # It delivers, but too little: back off as after a failure, then resume.
                last_error = str(exc)
                log.warning("%s is too slow (%s); trying again after a backoff", url.rsplit("/", 1)[-1][:12], exc)
            except (httpx.TransportError, _Retryable) as exc:
                last_error = str(exc) or type(exc).__name__
                if tally.fetched > before:
                    failures = 0  # the link works, it just broke: resume right away
                    continue
            failures += 1
            if failures >= self.attempts:
                raise ServerError(
                    f"cannot download {url}: {self.attempts} attempts in a row failed or were too slow ({last_error})",
                    hint="the partial file is kept; the agent resumes it at its next check-in",
                )
            self._wait_before_retry(failures - 1)

    def _get_range(self, url: str, dest: Path, have: int, length: int, progress: Callable[[int], None] | None,
                   tally: Fetched) -> None:
        headers = {"Range": f"bytes={have}-"} if have else {}
        if have:
            log.info("resuming %s at byte %d of %d", url.rsplit("/", 1)[-1][:12], have, length)
        with self._client.stream("GET", url, headers=headers) as r:
            if r.status_code == 416:
                os.truncate(dest, 0)  # our partial does not fit the file: start over
                raise _Retryable(f"server refused range {have}-")
            if r.status_code >= 500 or r.status_code == 429:
                raise _Retryable(f"server answered {r.status_code}")
            if r.status_code >= 400:
                raise ServerError(f"GET {url} answered {r.status_code}", hint="check the device credentials and the assignment")
            if r.status_code == 206:
                start = r.headers.get("content-range", "").removeprefix("bytes ").split("-", 1)[0]
                if start != str(have):
                    raise _Retryable(f"server answered range {r.headers.get('content-range')!r} for bytes={have}-")
                offset = have
            else:
                offset = 0  # a 200 is the whole file: overwrite the partial
            self._write(r, dest, offset, length, progress, tally)

    def _write(self, r: httpx.Response, dest: Path, offset: int, length: int, progress: Callable[[int], None] | None,
               tally: Fetched) -> None:
        tally.resumed = min(tally.resumed, offset)  # a 200 rewrites the partial from the start
        written = 0
        floor = RateFloor(self.min_rate, self.rate_window_s, time.monotonic()) if self.min_rate else None

        def watch(nbytes: int) -> None:
            average = floor.too_slow(nbytes, time.monotonic()) if floor is not None else None
            if average is not None:
                raise _TooSlow(f"{average:.0f} B/s over {self.rate_window_s:g} s, below the floor of {self.min_rate} B/s")

        try:
            with open(dest, "r+b" if dest.exists() else "wb") as f:
                f.seek(offset)
                f.truncate()
                unsynced = 0
                for block in self._blocks(r, watch):
                    block = block[: length - offset - written]
                    f.write(block)
                    written += len(block)
                    tally.fetched += len(block)
                    unsynced += len(block)
                    if unsynced >= SYNC_EVERY:
                        f.flush()
                        os.fsync(f.fileno())
                        unsynced = 0
                    if progress:
                        progress(offset + written)
                    if self._crash_at is not None and offset + written >= self._crash_at:
                        f.flush()
                        os.kill(os.getpid(), 9)
                    self._pace(len(block))
                    if offset + written >= length:
                        break
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise StoreError(
                    f"the device ran out of space downloading into {dest.parent} ({exc.strerror})",
                    hint="free disk space (old files, logs) or raise the file size limit; the running release is untouched",
                ) from exc
            raise StoreError(f"cannot write {dest}: {exc.strerror}", hint="check the data dir's permissions") from exc
        if offset + written < length:
            raise _Retryable(f"connection ended after {offset + written} of {length} bytes")
