"""Faults on the wire, as ASGI middleware around the real server app.

``EDGESHIP_TEST_FAULTS`` holds comma-separated faults applied to blob downloads
and deltas (``/repo/blobs/…``, ``/repo/deltas/…``), each once per server process (on the first file long enough):

    cut:N      close the connection after N bytes of the file have gone out
    flip:N     invert the byte at file offset N on its way out
    stall:N    stop sending after N bytes and hang (until the server is killed)
    assign:NAME@VERSION:RELEASE_ID   rewrite check-in answers to assign this (a compromised server)
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

Scope = dict[str, Any]


class InjectedCut(Exception):
    """Raised mid-response: uvicorn drops the connection, as a network cut would."""


class FaultInjector:
    def __init__(self, app: Any, spec: str | None = None) -> None:
        self.app = app
        self.faults = [f for f in (spec if spec is not None else os.environ.get("EDGESHIP_TEST_FAULTS", "")).split(",") if f]

    def _peek(self, kind: str) -> str | None:
        for f in self.faults:
            if f.startswith(kind + ":"):
                return f.split(":", 1)[1]
        return None

    def _fired(self, kind: str) -> None:
        self.faults = [f for f in self.faults if not f.startswith(kind + ":")]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(("/repo/blobs/", "/repo/deltas/")) and scope.get("method") == "GET":
            cut, flip, stall = self._peek("cut"), self._peek("flip"), self._peek("stall")
            if cut is not None or flip is not None or stall is not None:
                return await self.app(scope, receive, _Mangler(send, cut, flip, stall, self._fired))
        if scope["type"] == "http" and path.endswith("/checkin"):
            forged = self._peek("assign")  # every check-in, not once
            if forged is not None:
                return await self.app(scope, receive, _ForgedAssignment(send, forged))
        return await self.app(scope, receive, send)


class _Mangler:
    def __init__(self, send: Any, cut: str | None, flip: str | None, stall: str | None, fired: Any) -> None:
        self.send = send
        self.fired = fired  # a fault is used up only once it hit a byte (small blobs pass)
        self.cut = int(cut) if cut is not None else None
        self.flip = int(flip) if flip is not None else None
        self.stall = int(stall) if stall is not None else None
        self.offset = 0  # file offset of the next body byte

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            for k, v in message.get("headers", []):
                if k.lower() == b"content-range":
                    self.offset = int(v.decode().split()[1].split("-")[0])
        elif message["type"] == "http.response.body":
            body = bytearray(message.get("body", b""))
            if self.flip is not None and self.offset <= self.flip < self.offset + len(body):
                body[self.flip - self.offset] ^= 0xFF
                self.fired("flip")
            if self.cut is not None and self.offset + len(body) > self.cut:
                keep = max(0, self.cut - self.offset)
                self.fired("cut")
                await self.send({**message, "body": bytes(body[:keep]), "more_body": True})
                raise InjectedCut(f"cut at byte {self.cut}")
            if self.stall is not None and self.offset + len(body) > self.stall:
                await self.send({**message, "body": bytes(body[: max(0, self.stall - self.offset)]), "more_body": True})
                self.fired("stall")
                await asyncio.sleep(3600)
            self.offset += len(body)
            message = {**message, "body": bytes(body)}
        await self.send(message)


class _ForgedAssignment:
    def __init__(self, send: Any, forged: str) -> None:
        self.send = send
        ref, self.release_id = forged.rsplit(":", 1)
        self.name, self.version = ref.split("@")
        self.start: dict[str, Any] | None = None

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.start = message  # held back: the body length changes
            return
        if message["type"] == "http.response.body" and self.start is not None:
            doc = json.loads(message["body"])
            doc["assignment"] = {"name": self.name, "version": self.version, "release_id": self.release_id,
                                 "rollback": False, "rollout_id": None, "window": None, "notice_s": 0}
            body = json.dumps(doc).encode()
            headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
            await self.send({**self.start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await self.send({"type": "http.response.body", "body": body})
            return
        await self.send(message)
