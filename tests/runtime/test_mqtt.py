"""Results over MQTT against a real Mosquitto: delivery, a broker restart (QoS 1), TLS, the bounded buffer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgeship.errors import UsageError
from edgeship.mqtt import Broker
from edgeship.runtime import BackgroundServer
from edgeship.runtime.mqtt import MqttPublisher, topic_for
from tests.helpers.mosquitto import Mosquitto, Subscriber, needs_mosquitto, write_pki

from .conftest import Models, config_for, standard_release
from .harness import Device

pytestmark = needs_mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def completion(url: str, prompt: str) -> str:
    reply = httpx.post(f"{url}/v1/completions", json={"model": "llm", "prompt": prompt, "max_tokens": 3, "temperature": 0})
    assert reply.status_code == 200
    return reply.json()["choices"][0]["text"]


@pytest.mark.slow
def test_results_arrive_and_survive_a_broker_restart(broker: Mosquitto, device: Device, models: Models) -> None:
    release_id = standard_release(device, models)
    sub = Subscriber(broker.port, "edgeship/+/+/results")
    config = config_for(device, mqtt_url=f"mqtt://127.0.0.1:{broker.port}", device_id="dev-1")
    try:
        with BackgroundServer(config) as server:
            texts = [completion(server.url, p) for p in ("one", "two")]
            httpx.post(f"{server.url}/v1/predict", json={"inputs": {"image": [[[[0.5] * 32] * 32] * 3]}}).raise_for_status()
            before = sub.wait_for(3)
            assert sorted(m["output"] for m in before if m["endpoint"] == "completions") == sorted(texts)
            predicted = next(m for m in before if m["endpoint"] == "predict")
            assert predicted["output"]["denoised"]["shape"] == [1, 3, 32, 32]  # tensors go as a summary
            assert {m["device_id"] for m in before} == {"dev-1"} and {m["release_id"] for m in before} == {release_id}
            assert set(sub.topics) == {"edgeship/dev-1/llm/results", "edgeship/dev-1/denoiser/results"}

            broker.stop()
            texts += [completion(server.url, p) for p in ("three", "four", "five")]  # the broker is away
            broker.start()
            after = sub.wait_for(6, timeout=30)
            assert sorted(m["output"] for m in after if m["endpoint"] == "completions") == sorted(texts)
    finally:
        sub.close()


def test_tls_with_the_ca_file(broker: Mosquitto, device: Device, models: Models, tmp_path: Path) -> None:
    standard_release(device, models)
    sub = Subscriber(broker.port, "edgeship/tls-dev/#", client_id="tls-dashboard")
    config = config_for(device, mqtt_url=f"mqtts://127.0.0.1:{broker.tls_port}", mqtt_ca=broker.pki["ca"],
                        device_id="tls-dev")
    try:
        with BackgroundServer(config) as server:
            text = completion(server.url, "secure")
            [message] = sub.wait_for(1)
            assert message["output"] == text and message["model"] == "llm"
    finally:
        sub.close()
    # A broker certificate from another CA is refused: nothing is ever sent to it.
    other_ca = write_pki(tmp_path, "other")["ca"]
    stranger = MqttPublisher(f"mqtts://127.0.0.1:{broker.tls_port}", "x", ca=other_ca)
    try:
        time.sleep(1.5)
        assert not stranger.connected
    finally:
        stranger.close()


def test_buffer_is_bounded_while_the_broker_is_away(broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, topic_for("dev-2", "llm"), client_id="late")
    sub.wait_for(0)
    time.sleep(0.3)  # the durable subscription is in place before the broker goes away
    broker.stop()
    dropped: list[int] = []
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", "dev-2", buffer=3, min_backoff_s=1, max_backoff_s=1,
                              on_drop=lambda: dropped.append(1))
    try:
        accepted = [publisher.publish("llm", {"output": i}) for i in range(5)]
        assert accepted == [True, True, True, False, False] and len(dropped) == 2
        broker.start()
        outputs = sorted(m["output"] for m in sub.wait_for(3))
        assert outputs == [0, 1, 2]  # the buffered three, once; the two beyond the bound were dropped
        assert publisher.publish("llm", {"output": 5})
        assert sorted(m["output"] for m in sub.wait_for(4)) == [0, 1, 2, 5]
    finally:
        publisher.close()
        sub.close()


def test_topic_names_cannot_escape_their_level() -> None:
    assert topic_for("dev/1", "m+#") == "edgeship/dev_1/m__/results"


@pytest.mark.parametrize("url", ["mqtts://u:s3cret@host:abc", "mqtt://u:s3cret@host:99999", "mqtt://u:s3cret@host:0"])
def test_a_bad_port_is_a_usage_error_that_does_not_quote_the_password(url: str) -> None:
    with pytest.raises(UsageError, match="no valid port") as caught:
        Broker.parse(url)
    assert "s3cret" not in str(caught.value) and "1 to 65535" in (caught.value.hint or "")
    with pytest.raises(UsageError) as caught:
        Broker.parse("ftp://u:s3cret@host")
    assert "s3cret" not in str(caught.value)
    assert Broker.parse("mqtts://u:p%40ss@host:65535") == Broker("host", 65535, True, "u", "p@ss")


def test_credentials_come_as_a_pair() -> None:
    broker = Broker.parse("mqtt://server:server-pw@host")
    assert broker.login() == ("server", "server-pw")
    assert broker.login("dev_a", "dev-pw") == ("dev_a", "dev-pw")
    assert broker.login("dev_a") == ("dev_a", None)  # never the URL's password in another user's name
    assert Broker.parse("mqtt://host").login(None, "stray") == (None, None)


def test_a_login_in_the_url_wins_over_the_enrolled_device_s(tmp_path: Path) -> None:
    from edgeship.agent.api import Identity, save_identity
    from edgeship.agent.config import DataDir
    from edgeship.mqtt import device_password
    from edgeship.runtime.config import RuntimeConfig, mqtt_login

    data = DataDir(tmp_path)
    data.identity.parent.mkdir(parents=True, exist_ok=True)
    save_identity(data.identity, Identity("dev_enrolled", "secret", "https://127.0.0.1:1"))
    assert mqtt_login(RuntimeConfig(data_dir=tmp_path, mqtt_url="mqtt://host")) == ("dev_enrolled", device_password("secret"))
    assert mqtt_login(RuntimeConfig(data_dir=tmp_path, mqtt_url="mqtt://me:pw@host")) == (None, None)
