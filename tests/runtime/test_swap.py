"""Hot swap: zero failed requests under load, failed loads keep the old release, memory-bound drains."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from starlette.testclient import TestClient

from edgeship.errors import RuntimeBackendError
from edgeship.release.manifest import ComponentKind
from edgeship.runtime import BackgroundServer, RuntimeClient
from edgeship.runtime.app import create_app
from edgeship.runtime.backend import BackendOptions
from edgeship.runtime.llama import GenerationParams
from edgeship.runtime.release import prepare_release

from .conftest import Models, config_for, standard_release
from .harness import PROMPT, TENSOR, Device, Load


def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.02)


def two_releases(device: Device, models: Models) -> tuple[str, str]:
    a = standard_release(device, models, "1.0.0", llama=models.llama_a)
    b = standard_release(device, models, "2.0.0", llama=models.llama_b, make_current=False)
    return a, b


@pytest.mark.slow
def test_fifty_swaps_under_load_fail_no_request(device: Device, models: Models) -> None:
    a, b = two_releases(device, models)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        expected_text = {}
        for release in (b, a):  # ends on a, which it started with
            client.swap(release)
            expected_text[release] = httpx.post(f"{server.url}/v1/completions", json=PROMPT).json()["choices"][0]["text"]
        assert expected_text[a] != expected_text[b]  # the two releases answer differently, not just by label
        swaps: list[tuple[float, float, str]] = []  # (called, returned, release)
        with Load(server.url) as load:
            for i in range(50):
                target = b if i % 2 == 0 else a
                called = time.monotonic()
                outcome = client.swap(target)
                swaps.append((called, time.monotonic(), target))
                assert outcome.changed and outcome.release_id == target
                time.sleep(0.05)  # let requests land on the new release before the next swap
    assert len(load.answers) > 100
    failures = [a_ for a_ in load.answers if a_[2] != 200]
    assert failures == []
    for started, ended, _, release, text in load.answers:
        assert release in (a, b)
        if text is not None:
            assert text == expected_text[release]  # the answer really comes from that release's weights
        # A request sent after swap k returned (and finished before swap k+1 began) is answered by k's release.
        for k, (_, returned, target) in enumerate(swaps):
            next_called = swaps[k + 1][0] if k + 1 < len(swaps) else float("inf")
            if returned <= started and ended <= next_called:
                assert release == target


def test_failed_load_keeps_serving_the_old_release(device: Device, models: Models, tmp_path) -> None:
    good = standard_release(device, models)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(models.llama_a.read_bytes()[: models.llama_a.stat().st_size // 2])
    bad = device.install("2.0.0", {"llm": (ComponentKind.GGUF, broken)}, make_current=False, inspect=False)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        with pytest.raises(RuntimeBackendError, match=r"runtime /admin/swap failed \(500\): .*component llm"):
            client.swap(bad)
        answer = httpx.post(f"{server.url}/v1/completions", json=PROMPT)
        assert answer.status_code == 200 and answer.json()["system_fingerprint"] == good
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["ready"] and ready["release_id"] == good and bad[:12] in ready["error"]
        assert 'edgeship_runtime_swaps_total{outcome="failed"} 1.0' in httpx.get(f"{server.url}/metrics").text


def test_drain_first_when_both_releases_do_not_fit(device: Device, models: Models) -> None:
    a, b = two_releases(device, models)
    one = prepare_release(device.store.release_dir(a), BackendOptions(threads=1, n_ctx=256)).memory
    config = config_for(device, memory_budget=int(one * 1.5))
    with BackgroundServer(config) as server, RuntimeClient(device.root, server.url) as client:
        with Load(server.url) as load:
            until(lambda: any(x[3] == a for x in load.answers))  # requests on the old release, then the swap
            outcome = client.swap(b)
            until(lambda: any(x[3] == b for x in load.answers))
        assert outcome.drain_first and outcome.old_freed
        assert 0 < outcome.not_ready_seconds < 5
        assert [x for x in load.answers if x[2] != 200] == []  # requests in the gap waited, none failed
        assert {x[3] for x in load.answers} == {a, b}


def test_a_drain_first_swap_measures_the_drain_from_when_the_old_release_stopped_taking_requests(
        device: Device, models: Models) -> None:
    a, b = two_releases(device, models)
    one = prepare_release(device.store.release_dir(a), BackendOptions(threads=1, n_ctx=256)).memory
    with BackgroundServer(config_for(device, memory_budget=int(one * 1.5))) as server:
        host = server.runtime.host
        in_flight = host.lease()
        swapped: list = []
        t = threading.Thread(target=lambda: swapped.append(server.runtime.swap(b)))
        with host._cond:  # the swap prepares b, then waits for this lock while a still takes requests
            t.start()
            time.sleep(0.5)
            unblocked = time.perf_counter()
        until(lambda: host.current is None)  # a stopped taking requests after `unblocked`
        in_flight.close()  # a's last request ends
        idle = time.perf_counter()
        t.join(timeout=60)
    [o] = swapped
    assert o.drain_first and o.old_freed
    assert 0 < o.drain_seconds <= idle - unblocked  # not counted from the end of prepare, 0.5 s before


def test_swap_waits_for_in_flight_work_on_the_old_release(device: Device, models: Models) -> None:
    _, b = two_releases(device, models)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        in_flight = server.runtime.host.lease()  # what every request holds while it runs
        swapped: list = []
        t = threading.Thread(target=lambda: swapped.append(client.swap(b)))
        t.start()
        while httpx.post(f"{server.url}/v1/predict", json=TENSOR).json()["release_id"] != b:
            time.sleep(0.01)
        time.sleep(0.2)
        assert not swapped  # new requests go to b; the swap waits for a to drain...
        old_llm = in_flight.release.backends["llm"]
        assert old_llm.complete("Hi", GenerationParams(max_tokens=2)) is not None  # ...and a still works for it
        in_flight.close()
        t.join(timeout=30)
        assert swapped and swapped[0].old_freed and not in_flight.release.backends  # a is freed once idle


def test_in_flight_stream_finishes_on_the_old_release(device: Device, models: Models) -> None:
    a, b = two_releases(device, models)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        with httpx.stream("POST", f"{server.url}/v1/completions", json={**PROMPT, "max_tokens": 100, "stream": True}) as s:
            lines = s.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            outcome = client.swap(b)  # returns once a has drained, i.e. once this stream is done
            rest = [line for line in lines if line.startswith("data: ")]
        assert outcome.old_freed
        assert rest[-1] == "data: [DONE]" and len(rest) > 10
        assert all(f'"system_fingerprint":"{a}"' in line for line in [first, *rest[:-1]])
        assert httpx.post(f"{server.url}/v1/completions", json=PROMPT).json()["system_fingerprint"] == b


def test_starts_unready_without_a_release_and_serves_after_a_swap(device: Device, models: Models) -> None:
    release = standard_release(device, models, make_current=False)
    with BackgroundServer(config_for(device, ready_wait_s=0.2)) as server, RuntimeClient(device.root, server.url) as client:
        assert httpx.get(f"{server.url}/readyz").status_code == 503
        waited = httpx.post(f"{server.url}/v1/completions", json=PROMPT)
        assert waited.status_code == 503 and waited.headers["retry-after"] == "1"
        assert "no model is loaded" in waited.json()["error"]["message"]
        with pytest.raises(RuntimeBackendError, match="404.*`current` is not set"):
            client.swap()
        with pytest.raises(RuntimeBackendError, match="404.*not completely installed"):
            client.swap("0" * 64)
        assert client.swap(release).release_id == release
        assert client.ready()


def test_admin_needs_the_token_and_loopback(served: tuple[BackgroundServer, str]) -> None:
    server, _ = served
    token_file = server.data_dir / "runtime.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        reply = httpx.post(f"{server.url}/admin/swap", json={}, headers=headers)
        assert reply.status_code == 403 and "admin token" in reply.json()["error"]["message"]
    good = {"Authorization": f"Bearer {token_file.read_text()}"}
    assert httpx.post(f"{server.url}/admin/swap", json={}, headers=good).json()["changed"] is False
    assert httpx.post(f"{server.url}/admin/swap", json={"release_id": "../../etc"}, headers=good).status_code == 400
    # The ASGI test client calls from host "testclient": not loopback, so refused even with the token.
    with TestClient(create_app(server.runtime)) as remote:
        reply = remote.post("/admin/swap", json={}, headers=good)
        assert reply.status_code == 403 and "loopback only" in reply.json()["error"]["message"]


def test_two_runtimes_in_one_process(tmp_path, models: Models) -> None:
    first, second = Device(tmp_path / "one"), Device(tmp_path / "two")
    a = standard_release(first, models, llama=models.llama_a)
    b = standard_release(second, models, llama=models.llama_b)
    with BackgroundServer(config_for(first)) as one, BackgroundServer(config_for(second)) as two:
        assert httpx.post(f"{one.url}/v1/completions", json=PROMPT).json()["system_fingerprint"] == a
        assert httpx.post(f"{two.url}/v1/completions", json=PROMPT).json()["system_fingerprint"] == b
        one_metrics = httpx.get(f"{one.url}/metrics").text
        assert 'edgeship_runtime_requests_total{endpoint="/v1/completions",status="200"} 1.0' in one_metrics
        assert one.runtime.token != two.runtime.token


def test_a_client_gone_mid_stream_frees_the_model(device: Device, models: Models) -> None:
    _, b = two_releases(device, models)
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        with httpx.stream("POST", f"{server.url}/v1/completions", json={**PROMPT, "max_tokens": 200, "stream": True}, timeout=60) as s:
            next(line for line in s.iter_lines() if line.startswith("data: "))
        # The llama.cpp context and the lease are released: the next request and a swap both go through.
        assert httpx.post(f"{server.url}/v1/completions", json=PROMPT, timeout=30).status_code == 200
        outcome = client.swap(b)
        assert outcome.old_freed and outcome.swap_seconds < 30


def test_a_broken_current_release_starts_unready_and_says_why(device: Device, models: Models, tmp_path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(models.llama_a.read_bytes()[:4096])
    device.install("1.0.0", {"llm": (ComponentKind.GGUF, broken)}, inspect=False)
    good = standard_release(device, models, "1.0.1", make_current=False)
    with BackgroundServer(config_for(device, ready_wait_s=0.1)) as server, RuntimeClient(device.root, server.url) as client:
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and "GGUF" in ready.json()["error"]
        assert client.swap(good).release_id == good  # the agent rolls back; the runtime follows
        assert client.ready()


def test_start_and_swap_read_each_gguf_header_once(device: Device, models: Models,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.formats import facts

    _, b = two_releases(device, models)
    read: list[str] = []
    parse = facts.read_header
    monkeypatch.setattr(facts, "read_header", lambda path, **kw: read.append(path.name) or parse(path, **kw))
    with BackgroundServer(config_for(device)) as server, RuntimeClient(device.root, server.url) as client:
        assert read == [models.llama_a.name]  # sized and loaded from one read
        client.swap(b)
    assert read == [models.llama_a.name, models.llama_b.name]
