"""schemathesis against the server's own OpenAPI document: every operation of the device and
operator APIs, without credentials, with an operator's, with a device's (and, for the device
routes, as that very device; for enrollment, with a real token), on valid and invalid data,
on SQLite and on PostgreSQL (which refuses more: NUL characters, integers over 64 bits).
Any 5xx, or any response whose status, body or content type is not the documented one, fails."""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.api import api_under_test, fuzz_api
from tests.helpers.server import fresh_database_url  # noqa: F401 - SQLite and PostgreSQL

EXAMPLES = 6  # per operation and mode in CI (about 850 requests a database); `benchmarks/fuzz.py` runs more


def test_api_answers_every_input_as_documented(tmp_path: Path, fresh_database_url: str) -> None:  # noqa: F811
    with api_under_test(tmp_path, fresh_database_url) as api:
        report = fuzz_api(api, EXAMPLES)
    assert report.requests > 500
    assert not report.failures, "\n".join(report.failures) + "\n\n" + "\n\n".join(list(report.failures.values())[:3])
