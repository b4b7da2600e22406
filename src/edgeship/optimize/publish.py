"""Push one signed release per chosen variant, with requirements the rollout engine checks.

Each release is named ``<name>-<variant>`` (e.g. ``assistant-q4_k_m``) at the version given,
so the variants of one model version sit side by side in the repository. The requirements
keep every device off a variant it cannot hold; which of several fitting variants a device
gets is the rollout's target (tags), since requirements have a floor but no ceiling.
"""

from __future__ import annotations

from collections import defaultdict

from edgeship.errors import UsageError
from edgeship.optimize.report import PushedRelease, Report
from edgeship.optimize.select import release_requirements
from edgeship.release.bundle import ComponentSpec, build_release
from edgeship.release.manifest import ComponentKind, check_name, parse_version
from edgeship.workspace import Workspace

KINDS = {"gguf": ComponentKind.GGUF, "onnx": ComponentKind.ONNX}


def release_name(name: str, variant: str) -> str:
    return f"{name}-{variant.lower()}"


def publish_choices(ws: Workspace, report: Report, name: str, version: str) -> list[PushedRelease]:
    """Build, sign and publish a release for every variant some profile chose."""
    chosen: dict[str, list[str]] = defaultdict(list)
    for choice in report.choices:
        if choice.variant is not None:
            chosen[choice.variant].append(choice.profile)
    if not chosen:
        raise UsageError("no variant fits any of the profiles, so there is nothing to push", hint="see the reasons above")
    parse_version(version)
    # Every name is checked before anything is signed: no half-pushed set of releases.
    try:
        for variant in chosen:
            check_name(release_name(name, variant), "release name")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    profiles = {p.name: p for p in report.profiles}
    pushed = []
    for variant, profile_names in chosen.items():
        v = report.variant(variant)
        requirements = release_requirements(v.memory, [profiles[n] for n in profile_names])
        manifest = build_release(
            release_name(name, variant),
            version,
            [ComponentSpec(KINDS[report.kind], v.path, "model")],
            ws.store,
            requirements=requirements,
            notes=f"{variant} of {report.source.name} for {', '.join(profile_names)} (edgeship optimize)",
        )
        release_id = ws.publish(manifest)
        pushed.append(
            PushedRelease(manifest.name, version, variant, release_id, tuple(profile_names), requirements.model_dump(mode="json"))
        )
    report.releases.extend(pushed)
    return pushed
