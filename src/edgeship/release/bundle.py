"""Build a release from files: validate each component, store its blob, write the manifest."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeship.errors import UsageError, ValidationError
from edgeship.release.imageio import ImageIO, resolve
from edgeship.release.inspect import inspect_component
from edgeship.formats.files import require_file
from edgeship.release.manifest import (
    BASE_META,
    DIGEST_RE,
    MEDIA_TYPES,
    Component,
    ComponentKind,
    HealthSuite,
    Manifest,
    Requirements,
    check_file_name,
    check_name,
    first_error,
    parse_version,
)
from edgeship.store.digest import hash_file
from edgeship.store.local import LocalBlobStore
from edgeship.units import parse_size


@dataclass(frozen=True)
class ComponentSpec:
    kind: ComponentKind
    path: Path
    name: str

    @classmethod
    def parse(cls, text: str) -> ComponentSpec:
        """'[NAME:]KIND=PATH', e.g. 'model/gguf=./tiny.gguf' or 'llm:model/gguf=./tiny.gguf'."""
        left, sep, path = text.partition("=")
        if not sep or not path:
            raise UsageError(f"component {text!r} not understood", hint="write KIND=PATH or NAME:KIND=PATH, e.g. model/gguf=./model.gguf")
        name, _, kind_text = left.rpartition(":")
        try:
            kind = ComponentKind(kind_text)
        except ValueError as exc:
            kinds = ", ".join(k.value for k in ComponentKind)
            raise UsageError(f"unknown component kind {kind_text!r}", hint=f"use one of {kinds}") from exc
        p = Path(path).absolute()  # like every path on the command line (edgeship.cli.paths)
        return cls(kind, p, name or _default_name(p))


def _default_name(path: Path) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in path.name.lower()).strip("-._")
    return cleaned or "component"


def parse_requirements(text: str | None) -> Requirements:
    """'ram=2GiB,arch=aarch64|x86_64,accelerator=cuda' -> Requirements."""
    if not text:
        return Requirements()
    fields: dict[str, object] = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not value:
            raise UsageError(f"requirement {item!r} not understood", hint="write e.g. ram=2GiB,arch=aarch64,accelerator=cuda")
        if key == "ram":
            fields["min_ram"] = parse_size(value)
        elif key in ("arch", "accelerator"):
            fields[key] = tuple(v for v in value.split("|") if v)
        else:
            raise UsageError(f"unknown requirement {key!r}", hint="known: ram, arch, accelerator")
    return Requirements(**fields)


ProgressHook = Callable[[str, int], None]
CHAT_TEMPLATE_META = "chat_template"  # the GGUF component's meta key for a template the release carries
MAX_CHAT_TEMPLATE = 64 * 1024  # bytes; real templates are 0.1-10 KB, a bigger file is the wrong file


def read_chat_template(text: str, specs: Sequence[ComponentSpec]) -> tuple[str, str]:
    """'[COMPONENT=]FILE' -> (GGUF component name, template text); without a name, the only GGUF."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = "", text
    ggufs = [s.name for s in specs if s.kind is ComponentKind.GGUF]
    if not name:
        if len(ggufs) != 1:
            raise UsageError(f"--chat-template {text}: the release has {len(ggufs)} GGUF components; say which",
                             hint="write --chat-template COMPONENT=FILE")
        name = ggufs[0]
    elif name not in ggufs:
        raise UsageError(f"--chat-template {text}: no GGUF component named {name!r}",
                         hint=f"GGUF components: {', '.join(ggufs) or 'none'}")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read chat template {path}: {exc.strerror}") from exc
    if len(data) > MAX_CHAT_TEMPLATE:
        raise ValidationError(f"chat template {path} is {len(data)} bytes, over {MAX_CHAT_TEMPLATE}",
                              hint="give the Jinja template file itself")
    try:
        template = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"chat template {path} is not UTF-8 text", hint="give the Jinja template file") from exc
    if not template.strip():
        raise ValidationError(f"chat template {path} is empty", hint="give the Jinja template file")
    return name, template


def build_release(
    name: str,
    version: str,
    specs: Sequence[ComponentSpec],
    store: LocalBlobStore,
    *,
    requirements: Requirements | None = None,
    health: HealthSuite | None = None,
    notes: str = "",
    image_io: Sequence[ImageIO] = (),
    chat_templates: Mapping[str, str] | None = None,
    adapter_base: str | None = None,
    on_component: ProgressHook | None = None,
) -> Manifest:
    """Validate and store every component, then return the (not yet signed) manifest.

    ONNX components get their image I/O (``meta["image"]``): detected, or as ``image_io`` says.
    ``chat_templates`` (GGUF component name -> Jinja text) go into those components' meta, so
    they are signed with the release and win over the template inside the GGUF on devices.
    Adapter components are signed with the digest of their base model: ``adapter_base``
    (a digest or the base's file), else the release's only GGUF component.
    """
    if not specs:
        raise UsageError("a release needs at least one --component")
    parse_version(version)
    try:
        check_name(name, "release name")
        for s in specs:
            check_name(s.name, "component name")
            check_file_name(s.path.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    for label, values in (("name", [s.name for s in specs]), ("file name", [s.path.name for s in specs])):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise UsageError(f"two components share the {label} {', '.join(dupes)}", hint="name them with NAME:KIND=PATH")
    # Validate everything before storing anything: a bad third file should not leave blobs behind.
    metas = [inspect_component(s.kind, s.path) for s in specs]
    given = _image_io_by_component(specs, image_io)
    for spec, meta in zip(specs, metas, strict=True):
        if spec.kind is ComponentKind.ONNX and (image := resolve(spec.name, meta, given.get(spec.name))) is not None:
            meta["image"] = image
        if chat_templates and spec.name in chat_templates:
            meta[CHAT_TEMPLATE_META] = chat_templates[spec.name]
    base = _adapter_base(specs, adapter_base)
    stored = []
    for spec in specs:
        stored.append(store.put_file(spec.path))
        if on_component:
            on_component(spec.name, stored[-1][1])
    gguf = [str(d) for s, (d, _) in zip(specs, stored, strict=True) if s.kind is ComponentKind.GGUF]
    components = []
    for spec, meta, (digest, size) in zip(specs, metas, stored, strict=True):
        if spec.kind is ComponentKind.LORA:
            meta[BASE_META] = base or gguf[0]
        components.append(
            Component(
                name=spec.name,
                kind=spec.kind,
                path=spec.path.name,
                digest=str(digest),
                size=size,
                media_type=MEDIA_TYPES[spec.kind],
                meta=meta,
            )
        )
    try:
        return Manifest(
            name=name,
            version=version,
            components=tuple(components),
            requirements=requirements or Requirements(),
            health=health or HealthSuite(),
            notes=notes,
            created=Manifest.now(),
        )
    except ValueError as exc:
        raise ValidationError(f"release {name}@{version} is not valid: {first_error(exc)}") from exc



def _adapter_base(specs: Sequence[ComponentSpec], given: str | None) -> str | None:
    """The base digest adapters are signed with: ``given`` (a digest or a file), or None for the release's GGUF."""
    if not any(s.kind is ComponentKind.LORA for s in specs):
        return None
    if given is not None:
        if DIGEST_RE.match(given):
            return given
        path = Path(given).absolute()
        require_file(path, "adapter base model")
        return str(hash_file(path)[0])
    if sum(s.kind is ComponentKind.GGUF for s in specs) != 1:
        raise UsageError("the release's adapters need to name their base model",
                         hint="pass --adapter-base sha256:HEX (or the base's GGUF file), or add exactly one model/gguf component")
    return None


def _image_io_by_component(specs: Sequence[ComponentSpec], image_io: Sequence[ImageIO]) -> dict[str, ImageIO]:
    onnx = [s.name for s in specs if s.kind is ComponentKind.ONNX]
    by_name: dict[str, ImageIO] = {}
    for io in image_io:
        name = io.component
        if name is None:
            if len(onnx) != 1:
                raise UsageError("--image-io must name its component when a release has "
                                 f"{'no' if not onnx else len(onnx)} ONNX components", hint="write NAME:key=value,...")
            name = onnx[0]
        if name not in onnx:
            raise UsageError(f"--image-io names {name!r}, which is not an ONNX component of this release",
                             hint=f"ONNX components: {', '.join(onnx) or 'none'}")
        if name in by_name:
            raise UsageError(f"--image-io given twice for component {name}", hint="put every key in one --image-io")
        by_name[name] = io
    return by_name
