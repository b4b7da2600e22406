"""JSON as the server reads it from clients: only what JSON has, refused in our own words.

Python's parser also accepts ``NaN``, ``Infinity`` and ``-Infinity``, and turns a number too
large for a float (``1e999``) into infinity; PostgreSQL's JSON columns refuse all of these
(SQLite would store them as text no client can parse back). It also lets through lone UTF-16
surrogates (an unpaired ``"\ud800"``), which are not Unicode: stored, say in a device's facts,
they made every later answer that carries them fail to encode (``device list`` answered 500).
Refused here, where every request body and JSON header is read, so no route stores one and the
caller hears which request was wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from edgeship.errors import UsageError


class _NotFinite(ValueError):
    pass


def _constant(_name: str) -> float:
    raise _NotFinite


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite
    return value


# Where a lone surrogate can come from: a \uD800-\uDFFF escape (a pair is two of them), or one
# already in a str. Only then is the parsed value checked, which costs a second pass.
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
# One decoder for every call: ``json.loads`` with hooks builds a new one each time (a third of
# the cost of reading a check-in body).
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_finite)


def loads(raw: bytes | str, what: str) -> Any:
    """``raw`` parsed as JSON, or a ``UsageError`` that names ``what`` was wrong."""
    try:
        # Bytes decoded as ``json.loads`` decodes them (UTF-8, or UTF-16/32 by their first bytes),
        # but strictly: encoded surrogates are not let through.
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw))
        value = _DECODER.decode(text)
        if _MAYBE_SURROGATE.search(text):
            json.dumps(value, ensure_ascii=False).encode()  # raises on a lone surrogate anywhere in it
        return value
    except _NotFinite:
        raise UsageError(f"{what} holds NaN or Infinity (or a number too large for a float)", hint="send finite numbers, or null where there is no value") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not JSON (line {exc.lineno}, column {exc.colno})", hint="send one JSON object (docs/protocol.md)") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} cannot be parsed", hint="send UTF-8 JSON (docs/protocol.md)") from None
    except UnicodeEncodeError:
        raise UsageError(f"{what} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff)", hint="send valid Unicode text") from None
    except RecursionError:
        raise UsageError(f"{what} is nested too deeply", hint="send flatter JSON") from None
    except ValueError:  # an integer of more digits than Python converts
        raise UsageError(f"{what} holds a number of too many digits", hint="send numbers a 64-bit integer or a float can hold") from None
