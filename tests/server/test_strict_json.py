"""The strict JSON reader every request body and JSON header goes through (pure)."""

from __future__ import annotations

import pytest

from edgeship.errors import UsageError
from edgeship.server.federated import metrics_json
from edgeship.server.strict_json import loads


def test_loads_refuses_what_json_does_not_have() -> None:
    assert loads(b'{"a": [1, 2.5, -0.0, 1e300, null]}', "x") == {"a": [1, 2.5, -0.0, 1e300, None]}
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "-1E+999"):
        with pytest.raises(UsageError, match="^the body holds NaN or Infinity"):
            loads(text, "the body")
    with pytest.raises(UsageError, match="is nested too deeply"):
        loads("[" * 100_000 + "]" * 100_000, "the body")


def test_the_federated_metrics_header_is_read_as_strictly() -> None:
    assert metrics_json('{"loss": 0.5}') == {"loss": 0.5}
    with pytest.raises(UsageError, match="^the Edgeship-Metrics header holds NaN or Infinity"):
        metrics_json('{"loss": NaN}')
    with pytest.raises(UsageError, match="^the Edgeship-Metrics header is not JSON"):
        metrics_json("{loss")
    with pytest.raises(UsageError, match="^the body is not JSON \\(line 2, column 3\\)"):
        loads('{"a":\n  oops}', "the body")
    with pytest.raises(UsageError, match="^the body cannot be parsed"):
        loads(b"\xff\xfe{", "the body")
    with pytest.raises(UsageError, match="^the body holds a number of too many digits"):
        loads("9" * 5000, "the body")


def test_lone_surrogates_are_refused_and_pairs_kept() -> None:
    assert loads(b'{"face": "\\ud83d\\ude00", "path": "C:\\\\ud800"}', "x") == {"face": "\U0001f600", "path": "C:\\ud800"}
    for text in (b'{"os": "x\\udfff"}', b'["\\ud800"]', b'{"k\\uDBFF": 1}', b'{"a": {"b": ["\\ud83d"]}}', '"\ud800"'):
        with pytest.raises(UsageError, match="^the body holds a lone UTF-16 surrogate"):
            loads(text, "the body")
    with pytest.raises(UsageError, match="^the body cannot be parsed"):  # a surrogate encoded as UTF-8 bytes
        loads(b'{"os": "\xed\xa0\x80"}', "the body")
