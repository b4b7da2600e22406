"""Hashed-bin delegation: how a large catalog's targets are split so a device reads little.

Flat, one ``targets.json`` names every file of every release: a device re-reads all of it
whenever anything is published, so its download and verification grow with the catalog.
Binned, the top-level targets names no file and delegates to ``2**BIT_LENGTH`` bins
(``bins-00`` … ``bins-ff``) by the leading bits of sha256(target path), a succinct
delegation (TAP 15) that python-tuf's ngclient walks by itself; a device fetches only the
bins that hold the paths it looks up.

Bins are signed by the targets key (docs/scaling.md, "Hashed bins" says why): the server,
which holds only the snapshot and timestamp keys, can no more forge a bin than the targets.
"""

from __future__ import annotations

from collections.abc import Iterable

from securesystemslib.signer import Key
from tuf.api.metadata import Delegations, SuccinctRoles, TargetFile, Targets

PREFIX = "bins"
# 256 bins: fixed once a repository is binned, because a snapshot may never drop a role a
# device has seen. 10,000 releases (~30,000 files) put ~120 entries (~40 KB) in a bin, and
# the snapshot naming every bin stays ~12 KB.
BIT_LENGTH = 8
BIN_AT = 2000  # a flat targets role reaching this many files is moved into bins at the next push


def delegation(key: Key, bit_length: int = BIT_LENGTH) -> Delegations:
    """The top-level targets' delegation of every path to bins signed by ``key``."""
    return Delegations({key.keyid: key}, succinct_roles=SuccinctRoles([key.keyid], 1, bit_length, PREFIX))


def succinct(targets: Targets) -> SuccinctRoles | None:
    """The bins a targets role delegates to, or None when it is flat."""
    return targets.delegations.succinct_roles if targets.delegations is not None else None


def sort_into(roles: SuccinctRoles, files: Iterable[TargetFile]) -> dict[str, list[TargetFile]]:
    """Files grouped by the bin their path hashes to."""
    out: dict[str, list[TargetFile]] = {}
    for f in files:
        out.setdefault(roles.get_role_for_target(f.path), []).append(f)
    return out


__all__ = ["BIN_AT", "BIT_LENGTH", "PREFIX", "delegation", "sort_into", "succinct"]
