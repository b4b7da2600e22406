"""Push one signed release per chosen variant, with requirements the rollout engine checks.

Each release is named from a template, by default ``{name}-{variant}`` (e.g.
``assistant-q4_k_m``), at the version given, so the variants of one model version sit side
by side in the repository. A template without ``{variant}`` (e.g. ``{name}``) keeps one
release line across versions — deltas from the last version, one name to roll out — and is
refused when the profiles chose more than one variant. The requirements keep every device
off a variant it cannot hold; which of several fitting variants a device gets is the
rollout's target (tags), since requirements have a floor but no ceiling.

Extra components (an image model, a config) and a health suite go into every release
unchanged; the chosen variant is the component named ``model``.
"""

from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Iterable, Sequence

from edgeship.errors import ConflictError, UsageError
from edgeship.optimize.report import PushedRelease, Report
from edgeship.optimize.select import release_requirements
from edgeship.release.bundle import ComponentSpec, build_release
from edgeship.release.manifest import ComponentKind, HealthSuite, Manifest, check_name, parse_version
from edgeship.workspace import Workspace

KINDS = {"gguf": ComponentKind.GGUF, "onnx": ComponentKind.ONNX}
MODEL_COMPONENT = "model"
DEFAULT_RELEASE_NAME = "{name}-{variant}"
_FIELDS = {"name", "variant"}


def release_name(name: str, variant: str, template: str = DEFAULT_RELEASE_NAME) -> str:
    return template.format(name=name, variant=variant.lower())


def _fields(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise UsageError(f"release name template {template!r} does not parse: {exc}", hint="e.g. '{name}-{variant}' or '{name}'") from exc


def names_before_optimizing(name: str, template: str) -> list[str]:
    """The release names known before the variants are: the one line of a template without ``{variant}``."""
    return [] if "variant" in _fields(template) else [release_name(name, "", template)]


def check_template(template: str, variants: int = 1) -> None:
    """A usable release name template for ``variants`` chosen variants, or a UsageError."""
    fields = _fields(template)
    if fields - _FIELDS or "name" not in fields:
        raise UsageError(f"release name template {template!r} must use {{name}} and may use {{variant}}, nothing else",
                         hint="e.g. '{name}-{variant}' (the default) or '{name}'")
    if variants > 1 and "variant" not in fields:
        raise UsageError(f"the profiles chose {variants} variants, but {template!r} gives them one release name",
                         hint="put {variant} in --release-name, or optimize for profiles that share a variant")


def check_extra(extra: Sequence[ComponentSpec]) -> None:
    """Refuse a ``--with`` component that takes the optimized model's name (given, or from its file name)."""
    if any(s.name == MODEL_COMPONENT for s in extra):
        raise UsageError(f"--with component named {MODEL_COMPONENT!r}: that name is the optimized model's",
                         hint="name it, e.g. --with vision:model/onnx=./detector.onnx")


def check_versions(ws: Workspace, names: Iterable[str], version: str) -> None:
    """Refuse, before anything is signed, when a release line already holds ``version`` or a later one.

    ``Workspace.publish`` refuses such a release only when its turn comes, after the others of
    the set are signed: a half-pushed set that a retry at the same version cannot finish.
    """
    parse_version(version)  # a malformed version is a ValidationError before any lookup
    stale = [f"{n}@{latest}" for n in dict.fromkeys(names) if (latest := ws.not_newer(n, version)) is not None]
    if stale:
        raise ConflictError(f"--version {version} is not newer than the latest of {', '.join(stale)}; nothing was signed",
                            hint="releases only move forward; pass a higher --version")


def publish_choices(
    ws: Workspace,
    report: Report,
    name: str,
    version: str,
    *,
    extra: Sequence[ComponentSpec] = (),
    health: HealthSuite | None = None,
    name_template: str = DEFAULT_RELEASE_NAME,
) -> list[PushedRelease]:
    """Build, sign and publish a release for every variant some profile chose."""
    chosen: dict[str, list[str]] = defaultdict(list)
    for choice in report.choices:
        if choice.variant is not None:
            chosen[choice.variant].append(choice.profile)
    if not chosen:
        raise UsageError("no variant fits any of the profiles, so there is nothing to push", hint="see the reasons above")
    parse_version(version)
    check_template(name_template, len(chosen))
    check_extra(extra)
    names = [release_name(name, variant, name_template) for variant in chosen]
    try:
        for n in names:
            check_name(n, "release name")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    check_versions(ws, names, version)
    profiles = {p.name: p for p in report.profiles}
    # Every release is built (and so checked) before any is signed: no half-pushed set.
    built: list[tuple[str, list[str], Manifest]] = []
    for variant, profile_names in chosen.items():
        v = report.variant(variant)
        manifest = build_release(
            release_name(name, variant, name_template),
            version,
            [ComponentSpec(KINDS[report.kind], v.path, MODEL_COMPONENT), *extra],
            ws.store,
            requirements=release_requirements(v.memory, [profiles[n] for n in profile_names]),
            health=health,
            notes=f"{variant} of {report.source.name} for {', '.join(profile_names)} (edgeship optimize)",
        )
        built.append((variant, profile_names, manifest))
    pushed = []
    for variant, profile_names, manifest in built:
        release_id = ws.publish(manifest)
        pushed.append(PushedRelease(manifest.name, version, variant, release_id, tuple(profile_names),
                                    manifest.requirements.model_dump(mode="json")))
    report.releases.extend(pushed)
    return pushed
