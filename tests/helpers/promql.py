"""The metric and label names a PromQL expression reads: enough PromQL for the dashboard test.

Not a full parser: strings, range/offset selectors and Grafana variables are removed first,
then every bare identifier that is not a function call, keyword or number is a metric name,
and the names inside ``by (…)``/``without (…)`` and ``{…}`` are label names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_IDENT = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")


@dataclass
class Reads:
    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)


def reads(expr: str) -> Reads:
    """Metric names and label names that ``expr`` refers to."""
    out = Reads()
    text = _STRING.sub('""', expr)
    text = _RANGE.sub(" ", text)
    for _, names in _GROUPING.findall(text):
        out.labels |= {n.strip() for n in names.split(",") if n.strip()}
    text = _GROUPING.sub(" ", text)
    for matchers in _MATCHERS.findall(text):
        out.labels |= {m.group(1) for m in re.finditer(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers)}
    text = _MATCHERS.sub(" ", text)
    text = re.sub(r"\$\w+|\$\{\w+\}", " ", text)  # Grafana variables, e.g. a $quantile
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        out.metrics.add(name)
    return out
