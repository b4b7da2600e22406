"""The device's side of enrollment, check-in and event batches: what a broken or hostile
server answers (valid answers mutated, or any bytes) reaches the agent over real HTTP from
a loopback server. The agent's client returns what it understood or raises an
EdgeshipError, which its loop reports and retries; anything else would stop the agent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeship.agent.api import DeviceClient, Identity
from edgeship.errors import EdgeshipError
from tests.fuzz.strategies import mutated

FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ENROLLED = {"device_id": "dev_0123456789abcdef0123", "secret": "s3cret", "poll_interval_s": 30, "tags": {"site": "lab"}}
CHECKIN = {"assignment": {"name": "app", "version": "1.2.0", "release_id": "ab" * 32, "rollback": False, "rollout_id": "ro_1",
                          "window": {"start": "02:00", "end": "04:00"}, "notice_s": 3600},
           "poll_interval_s": 30, "repo_path": "/repo/", "tags": {"site": "lab"}}
EVENTS = {"accepted": 2, "duplicates": 0}


class Answers(BaseHTTPRequestHandler):
    body = b"{}"
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(type(self).status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def answers(valid: dict) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(valid).map(lambda d: json.dumps(d).encode()), st.binary(max_size=100))


def survives(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except EdgeshipError as exc:
        assert exc.message.strip()


def test_enrollment_answers(server: str) -> None:
    @FUZZ
    @given(answers(ENROLLED), st.sampled_from([200, 201]))
    def run(body: bytes, status: int) -> None:
        Answers.body, Answers.status = body, status
        client = DeviceClient(server)
        try:
            survives(lambda: client.enroll("enr_0123456789abcdef.x", {}, {}))
        finally:
            client.close()

    run()


@pytest.mark.parametrize(("valid", "call"), [(CHECKIN, "checkin"), (EVENTS, "events")])
def test_checkin_and_event_answers(server: str, valid: dict, call: str) -> None:
    client = DeviceClient(server, identity=Identity(ENROLLED["device_id"], "s3cret", server))

    def ask() -> object:
        if call == "checkin":
            reply = client.checkin(None, None, "idle", None)
            if reply.assignment is not None and reply.assignment.window:
                from edgeship.rollout.window import MaintenanceWindow

                MaintenanceWindow.from_dict(reply.assignment.window)  # what the loop does with it
            return reply
        return client.post_events([{"id": "e1"}])

    @FUZZ
    @given(answers(valid))
    def run(body: bytes) -> None:
        Answers.body, Answers.status = body, 200
        survives(ask)

    try:
        run()
    finally:
        client.close()
