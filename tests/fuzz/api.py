"""schemathesis against a real server (``edgeship server`` on a loopback port) with an operator
token, an enrolled device and a release: the CI test and ``benchmarks/fuzz.py`` both run
``fuzz_api``, with few or many examples per operation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as with_seed
from schemathesis.core.failures import FailureGroup
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance

from tests.server.conftest import Fleet, start_fleet

# Any 5xx, or a response whose status, body or content type the OpenAPI document does not declare.
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@dataclass
class ApiUnderTest:
    fleet: Fleet
    device_id: str
    device: dict[str, str]
    enroll_token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.fleet.admin_token}"}

    def variants(self, case: schemathesis.Case) -> Iterator[schemathesis.Case]:
        """The generated request as it is, then with each credential; device routes also as
        the device the credential belongs to, enrollment also with a token that works."""
        for headers in ({}, self.admin, self.device):
            case.headers = {**(case.headers or {}), **headers}
            yield case
        if "device_id" in (case.path_parameters or {}) and case.path.startswith("/v1/devices/"):
            case.path_parameters = {**case.path_parameters, "device_id": self.device_id}
            case.headers = {**(case.headers or {}), **self.device}
            yield case
        if case.path == "/v1/devices/enroll" and isinstance(case.body, dict):
            case.body = {**case.body, "token": self.enroll_token}
            yield case


@contextlib.contextmanager
def api_under_test(root: Path, database_url: str = "") -> Iterator[ApiUnderTest]:
    fleet = start_fleet(root, database_url)
    try:
        token = fleet.enroll_token(uses=1_000_000)["token"]
        device = fleet.enroll()
        yield ApiUnderTest(fleet, device.id, device.auth, token)
    finally:
        fleet.admin.close()
        fleet.server.stop()


@dataclass
class FuzzReport:
    requests: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # first line -> the whole report


def fuzz_api(api: ApiUnderTest, examples: int, seed: int | None = None) -> FuzzReport:
    """``examples`` generated requests per operation and generation mode (valid and invalid
    data), each sent in every variant; failures are collected, not raised."""
    report = FuzzReport()
    schema = schemathesis.openapi.from_url(f"{api.fleet.url}/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in _modes(operation):

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=seed is None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                for variant in api.variants(case):
                    report.requests += 1
                    try:
                        variant.call_and_validate(checks=CHECKS)
                    except (Exception, FailureGroup) as exc:  # noqa: BLE001 - every failure is recorded and reported
                        kinds = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
                        key = f"{operation.label}: " + ", ".join(sorted({getattr(e, "title", type(e).__name__) for e in kinds}))
                        report.failures.setdefault(key, f"{operation.label} ({mode.value}): {exc}")

            (with_seed(seed)(run) if seed is not None else run)()
    return report


def _modes(operation: schemathesis.APIOperation) -> list[schemathesis.GenerationMode]:
    """Valid data always; invalid data where it exists: a body or a query has constraints to
    break, a path or header string has none (asking for it there only burns time)."""
    constrained = bool(operation.body) or any(p.location.value == "query" for p in operation.iter_parameters())
    return list(schemathesis.GenerationMode) if constrained else [schemathesis.GenerationMode.POSITIVE]
