"""Rollouts end to end: the CLI against a real server, with real agents installing real releases.

The tests run in order on one lab (a fleet of five agents): each starts from where the
previous one left the fleet, as an operator's day would.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.rollouts.conftest import Lab, Receiver

SECRET = "a-shared-secret-for-the-hooks"
PILOTS, OTHERS = ("p1", "p2"), ("a", "b", "c")


@pytest.fixture(scope="module")
def receiver(lab: Lab) -> Any:
    hook = Receiver(fail_first=1)  # the first delivery fails: the server must retry it
    url = hook.start()
    assert lab.cli("webhook", "add", url, "--secret", SECRET) == 0
    yield hook
    hook.stop()


def status(lab: Lab, capsys: pytest.CaptureFixture[str], rollout_id: str) -> dict[str, Any]:
    return lab.cli_json(capsys, "rollout", "status", rollout_id)


def releases_seen(lab: Lab, name: str) -> set[str]:
    """Every release a device reported a state for."""
    return {e["release"] for e in lab.server.events(lab.agents[name].device_id) if e["type"] == "state"}


def test_a_good_release_goes_through_pilot_and_stages_and_completes(lab: Lab, receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    for name in PILOTS:
        lab.start_agent(name, {"ring": "pilot"}, {"SICK": "1"} if name == "p2" else None)
    for name in OTHERS:
        lab.start_agent(name, {})
    lab.wait("five agents enrolled", lambda: all((d.data / "identity.json").exists() for d in lab.agents.values()))
    started = lab.cli_json(capsys, "rollout", "start", "llm@1.0.0", "--stages", "50,100", "--bake", "1s")
    assert [s["name"] for s in started["stages"]] == ["pilot", "50%", "100%"]
    assert started["stages"][0]["targeted"] == 2  # the two ring=pilot devices
    lab.wait("the rollout to complete", lambda: status(lab, capsys, started["id"])["status"] == "completed")
    assert set(lab.versions().values()) == {"1.0.0"}
    final = status(lab, capsys, started["id"])
    assert sum(s["done"] for s in final["stages"]) == 5 and all(s["status"] == "passed" for s in final["stages"])
    capsys.readouterr()
    assert lab.cli("rollout", "status", "--watch") == 0  # the newest rollout; finished, so the watch ends at once
    assert "completed in 100%" in capsys.readouterr().out
    lab.wait("the completed webhook", lambda: any(p["type"] == "rollout.completed" for p in receiver.payloads(SECRET)))
    assert receiver.attempts >= 2  # delivered on a retry after the 500


def test_a_release_failing_on_a_pilot_is_aborted_and_rolled_back_on_its_own(lab: Lab, receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    started = lab.cli_json(capsys, "rollout", "start", "llm@2.0.0", "--on-fail", "rollback", "--bake", "1s")
    assert started["previous"] == "llm@1.0.0"  # 2.0.0's signed rollback_to
    rid = started["id"]
    lab.wait("the rollout to abort and bring devices back",
             lambda: (s := status(lab, capsys, rid))["status"] == "aborted" and s["rollback_remaining"] == 0)
    final = status(lab, capsys, rid)
    assert final["rollback"] and "failed in pilot" in final["reason"]
    lab.wait("every device back on 1.0.0", lambda: set(lab.versions().values()) == {"1.0.0"})
    for name in OTHERS:  # stopped in the pilot: no other device ever heard of 2.0.0
        assert "llm@2.0.0" not in releases_seen(lab, name)
    lab.wait("the aborted webhook", lambda: any(p["type"] == "rollout.aborted" and p["rollout"] == rid for p in receiver.payloads(SECRET)))


def test_an_always_failing_release_pauses_and_the_operator_aborts_it(lab: Lab, receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    rid = lab.cli_json(capsys, "rollout", "start", "llm@3.0.0", "--bake", "1s")["id"]
    lab.wait("the rollout to pause", lambda: status(lab, capsys, rid)["status"] == "paused")
    assert "failed in pilot" in status(lab, capsys, rid)["reason"]
    # Resuming does not forgive the failures: the budget is still blown, so it pauses again.
    resumed = lab.cli_json(capsys, "rollout", "resume", rid)
    assert resumed["status"] == "paused" and "failed in pilot" in resumed["reason"]
    aborted = lab.cli_json(capsys, "rollout", "abort", rid, "--no-rollback", "--reason", "bad build")
    assert aborted["status"] == "aborted" and not aborted["rollback"] and aborted["reason"] == "bad build"
    assert lab.cli("rollout", "resume", rid) == 5  # ConflictError: an aborted rollout stays aborted
    lab.wait("devices settled on 1.0.0", lambda: set(lab.versions().values()) == {"1.0.0"})
    for name in OTHERS:
        assert "llm@3.0.0" not in releases_seen(lab, name)
    lab.wait("paused and aborted webhooks", lambda: {"rollout.paused", "rollout.aborted"} <= {
        p["type"] for p in receiver.payloads(SECRET) if p["rollout"] == rid})
    kinds = [p["type"] for p in receiver.payloads(SECRET) if p["rollout"] == rid]
    assert kinds.count("rollout.aborted") == 1  # one abort, told once


def test_the_operator_pauses_resumes_and_promotes_a_rollout_to_completion(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    rid = lab.cli_json(capsys, "rollout", "start", "llm@4.0.0", "--stages", "50,100", "--bake", "10m")["id"]
    lab.wait("the pilot to bake", lambda: status(lab, capsys, rid)["status"] == "baking")
    baking = status(lab, capsys, rid)
    assert baking["phase"] == "pilot" and 0 < baking["stages"][0]["bake_left"] <= 600
    assert lab.cli_json(capsys, "rollout", "pause", rid)["status"] == "paused"
    for name in OTHERS:  # held: nobody outside the pilot is told to install while paused
        assignment = lab.cli_json(capsys, "device", "show", lab.agents[name].device_id)["assignment"]
        assert assignment is None or assignment["version"] != "4.0.0"
    assert lab.cli_json(capsys, "rollout", "resume", rid)["status"] in ("rolling", "baking")
    for _ in range(4):
        lab.wait("a stage to bake", lambda: status(lab, capsys, rid)["status"] in ("baking", "completed"))
        if status(lab, capsys, rid)["status"] == "completed":
            break
        assert lab.cli("rollout", "promote", rid) == 0
    lab.wait("every device on 4.0.0", lambda: set(lab.versions().values()) == {"4.0.0"})
    assert status(lab, capsys, rid)["status"] == "completed"
    listed = lab.cli_json(capsys, "rollout", "list")
    assert [r["release"] for r in listed] == ["llm@4.0.0", "llm@3.0.0", "llm@2.0.0", "llm@1.0.0"]
