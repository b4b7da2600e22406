"""Group commit: calls that arrive while a batch is being written are written together next.

Check-in is the server's hottest path, and most of its cost was per transaction, not per
device: a worker thread hop, a pooled connection checkout, BEGIN, the SQLite writer lock,
COMMIT and (on PostgreSQL) its WAL flush. Here concurrent calls share all of that. No call is
answered before the batch holding it has returned, i.e. committed: an acknowledged check-in
is a stored check-in, even if the server is killed the moment after. A batch of one is the
unloaded case, so there is no timer and no added latency: the next batch starts as soon as
the previous one ends, with whatever arrived meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

Call = TypeVar("Call")
Result = TypeVar("Result")


class GroupCommit(Generic[Call, Result]):
    """Feeds ``write(calls) -> one result or exception per call`` from ``submit``, one batch
    at a time, in a worker thread. When ``write`` itself raises (its transaction failed), each
    call of the batch is written again alone, so the exception reaches only the calls that
    cause it."""

    def __init__(self, write: Callable[[list[Call]], list[Result | Exception]], max_batch: int = 256) -> None:
        self._write = write
        self._max_batch = max_batch
        self._queue: list[tuple[Call, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, call: Call) -> Result:
        """The result of ``call``, once the batch it went into is written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((call, future))
        # A writer of another loop (an app served by one test client, then another) is gone.
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            calls = [call for call, _ in batch]
            try:
                results = await anyio.to_thread.run_sync(self._write, calls)
            except Exception as exc:  # the transaction failed: nothing of the batch is stored
                # Write each call alone, so that one bad call (input the database refuses)
                # fails only its own request, as it would without batching.
                results = [exc] if len(calls) == 1 else [await self._alone(call) for call in calls]
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its request was cancelled (client gone); its write stands
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _alone(self, call: Call) -> Result | Exception:
        try:
            return (await anyio.to_thread.run_sync(self._write, [call]))[0]
        except Exception as exc:
            return exc
