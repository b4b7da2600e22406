"""The trial: models parse, the health command passes, and nothing hangs past its timeout."""

from __future__ import annotations

import time

from edgeship.agent.store import DeviceStore
from edgeship.agent.trial import run_trial
from edgeship.release.manifest import HealthSuite
from tests.agent.conftest import install_locally
from tests.agent.harness import Releases


def trial(releases: Releases, store: DeviceStore, version: str, **kw: object):  # noqa: ANN201
    rid = install_locally(store, releases.ws, releases.publish(version, **kw))  # type: ignore[arg-type]
    return run_trial(store.release_dir(rid), parse_timeout_s=60)


def test_a_good_release_passes(releases: Releases, device_store: DeviceStore) -> None:
    health = HealthSuite(command='test -f model.gguf && test "$EDGESHIP_RELEASE_DIR" = "$PWD"', timeout_s=10)
    result = trial(releases, device_store, "1.0.0", health=health)
    assert result.ok, result.reason


def test_a_model_that_does_not_parse_fails(releases: Releases, device_store: DeviceStore) -> None:
    result = trial(releases, device_store, "1.0.0", broken_model=True)
    assert not result.ok and "model check failed" in (result.reason or "") and "GGUF" in (result.reason or "")


def test_a_failing_health_command_fails_with_its_output(releases: Releases, device_store: DeviceStore) -> None:
    result = trial(releases, device_store, "1.0.0", health=HealthSuite(command="echo out of memory; exit 3", timeout_s=10))
    assert not result.ok and "exited 3" in (result.reason or "") and "out of memory" in (result.reason or "")


def test_a_hanging_health_command_is_killed_at_its_timeout(releases: Releases, device_store: DeviceStore) -> None:
    t = time.monotonic()
    # The grandchild (sleep) must die too, or communicate() would wait for its pipe.
    result = trial(releases, device_store, "1.0.0", health=HealthSuite(command="sleep 60 & sleep 60", timeout_s=1))
    assert not result.ok and "within 1s" in (result.reason or "")
    assert time.monotonic() - t < 20
