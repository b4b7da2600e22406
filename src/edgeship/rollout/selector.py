"""Device selectors: ``site=berlin,hw=pi5``, ``id=dev-1,id=dev-2``, or the whole fleet."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgeship.errors import UsageError

# The pseudo-tag that names devices by ID rather than by tag.
ID_KEY = "id"


@dataclass(frozen=True)
class Selector:
    """Tag terms: the same key repeated means "any of", different keys mean "all of".

    The empty selector matches every device.
    """

    terms: tuple[tuple[str, frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Selector:
        """Parse ``key=value[,key=value…]``; empty or ``*`` means the whole fleet."""
        if text is None or text.strip() in {"", "*"}:
            return cls()
        grouped: dict[str, set[str]] = {}
        for item in text.split(","):
            key, sep, value = item.strip().partition("=")
            if not sep or not key.strip() or not value.strip():
                raise UsageError(
                    f"selector term {item.strip()!r} is not key=value",
                    hint="write e.g. site=berlin,hw=pi5 or id=dev-1,id=dev-2",
                )
            grouped.setdefault(key.strip(), set()).add(value.strip())
        return cls(tuple(sorted((k, frozenset(v)) for k, v in grouped.items())))

    def matches(self, device_id: str, tags: Mapping[str, str]) -> bool:
        for key, values in self.terms:
            actual = device_id if key == ID_KEY else tags.get(key)
            if actual not in values:
                return False
        return True

    @property
    def is_fleet(self) -> bool:
        return not self.terms

    def __str__(self) -> str:
        if not self.terms:
            return "*"
        return ",".join(f"{k}={v}" for k, values in self.terms for v in sorted(values))
