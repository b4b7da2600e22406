"""The release manifest: what a release is made of, in canonical JSON.

A release ID is the sha256 of the manifest's canonical bytes, so two operators who
build the same release get the same ID, and any edit to a manifest changes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from enum import Enum
from collections.abc import Callable
from typing import Annotated, Any, Literal

import semver
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from edgeship.errors import MissingBaseError, UsageError, ValidationError

MANIFEST_FORMAT = "edgeship-manifest/1"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# Release and component names end up in URLs and file names: keep them boring.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ComponentKind(str, Enum):
    GGUF = "model/gguf"
    ONNX = "model/onnx"
    SAFETENSORS = "model/safetensors"
    LORA = "adapter/lora"  # llama.cpp's GGUF LoRA adapter, for the base named by meta["base"]
    CONFIG = "config"
    FILE = "file"

    @property
    def is_model(self) -> bool:
        return self.value.startswith("model/")


MEDIA_TYPES: dict[ComponentKind, str] = {
    ComponentKind.GGUF: "application/vnd.gguf",
    ComponentKind.ONNX: "application/vnd.onnx",
    ComponentKind.SAFETENSORS: "application/vnd.safetensors",
    ComponentKind.LORA: "application/vnd.gguf",
    ComponentKind.CONFIG: "application/json",
    ComponentKind.FILE: "application/octet-stream",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Component(_Frozen):
    name: str
    kind: ComponentKind
    path: str = Field(description="file name inside the installed release directory")
    digest: str = Field(description='"sha256:<hex>" of the file')
    size: int = Field(ge=0)
    media_type: str
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "component name")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_file_name(v)

    @field_validator("digest")
    @classmethod
    def _digest(cls, v: str) -> str:
        if not DIGEST_RE.match(v):
            raise ValueError(f"digest {v!r} is not 'sha256:' followed by 64 lowercase hex digits")
        return v

    @property
    def hexdigest(self) -> str:
        return self.digest.split(":", 1)[1]


BASE_META = "base"  # an adapter component's meta key: the digest of the GGUF it was trained on


class Requirements(_Frozen):
    """What a device must have to run the release; None means "any"."""

    min_ram: int | None = Field(default=None, ge=0, description="bytes")
    arch: tuple[str, ...] = ()
    accelerator: tuple[str, ...] = ()

    def unmet_by(self, ram: int | None, arch: str | None, accelerator: str | None) -> list[str]:
        """Reasons a device with these facts cannot run the release (empty: it can)."""
        reasons = []
        if self.min_ram is not None and (ram is None or ram < self.min_ram):
            reasons.append(f"needs {self.min_ram} bytes of RAM, device has {ram}")
        if self.arch and arch not in self.arch:
            reasons.append(f"needs arch {'|'.join(self.arch)}, device is {arch}")
        if self.accelerator and accelerator not in self.accelerator:
            reasons.append(f"needs accelerator {'|'.join(self.accelerator)}, device has {accelerator}")
        return reasons


class LlmCheck(_Frozen):
    """Send a prompt to a GGUF component; the answer must meet every threshold given."""

    type: Literal["llm"] = "llm"
    component: str | None = Field(default=None, description="GGUF component name; None: the release's only one")
    prompt: str
    chat: bool = Field(default=False, description="send the prompt as one user message (chat template)")
    max_tokens: int = Field(default=16, ge=1)
    seed: int = 0
    non_empty: bool = True
    regex: str | None = Field(default=None, description="re.search pattern the answer must match")
    max_latency_s: float | None = Field(default=None, gt=0)
    min_tokens_per_s: float | None = Field(default=None, gt=0)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            # A typo in a pattern should fail when the release is built, not in the field.
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"regex {v!r} does not compile: {exc}") from exc
        return v


class ImageCheck(_Frozen):
    """Run an ONNX component on a known input; its output must be close to a reference.

    ``input`` and ``reference`` name ``file`` components of the same release: PNG/JPEG
    images go through the component's image pre/post-processing, ``.npy`` tensors
    straight to its first input and from its first output.
    """

    type: Literal["image"] = "image"
    component: str | None = Field(default=None, description="ONNX component name; None: the release's only one")
    input: str
    reference: str
    min_psnr: float | None = Field(default=None, description="dB")
    min_ssim: float | None = Field(default=None, ge=-1, le=1)
    max_latency_s: float | None = Field(default=None, gt=0)


class RssCheck(_Frozen):
    """The runtime's resident memory, with the release loaded and exercised, stays under a cap."""

    type: Literal["max_rss"] = "max_rss"
    max_rss: int = Field(gt=0, description="bytes")


HealthCheck = Annotated[LlmCheck | ImageCheck | RssCheck, Field(discriminator="type")]
_CHECK = TypeAdapter(HealthCheck)


class HealthSuite(_Frozen):
    """The trial a device runs after switching: a shell command and inference checks.

    ``checks`` stay plain dicts in the manifest (so a manifest's bytes, and so its release
    ID, do not change when this model gains a field with a default); each is validated
    as a :data:`HealthCheck` and read typed through :meth:`inference_checks`.
    """

    command: str | None = Field(default=None, description="shell command run in the release dir")
    timeout_s: float = Field(default=60.0, gt=0)
    checks: tuple[dict[str, Any], ...] = ()

    @field_validator("checks")
    @classmethod
    def _checks(cls, v: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        for i, check in enumerate(v):
            try:
                _CHECK.validate_python(check)
            except ValueError as exc:
                raise ValueError(f"health check {i} is not valid: {exc}") from exc
        return v

    def inference_checks(self) -> tuple[LlmCheck | ImageCheck | RssCheck, ...]:
        return tuple(_CHECK.validate_python(c) for c in self.checks)


class Manifest(_Frozen):
    format: str = MANIFEST_FORMAT
    name: str
    version: str
    components: tuple[Component, ...]
    requirements: Requirements = Requirements()
    health: HealthSuite = HealthSuite()
    notes: str = ""
    created: str = Field(description="RFC 3339 UTC time the release was built")

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v != MANIFEST_FORMAT:
            raise ValueError(f"unsupported manifest format {v!r}; this edgeship reads {MANIFEST_FORMAT}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "release name")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        try:
            parse_version(v)
        except UsageError as exc:
            raise ValueError(exc.message) from exc
        return v

    @field_validator("components")
    @classmethod
    def _components(cls, v: tuple[Component, ...]) -> tuple[Component, ...]:
        if not v:
            raise ValueError("a release needs at least one component")
        for field in ("name", "path"):
            seen = [getattr(c, field) for c in v]
            dupes = sorted({s for s in seen if seen.count(s) > 1})
            if dupes:
                raise ValueError(f"duplicate component {field}s: {', '.join(dupes)}")
        for c in v:
            base = c.meta.get(BASE_META) if c.kind is ComponentKind.LORA else None
            if c.kind is ComponentKind.LORA and not (isinstance(base, str) and DIGEST_RE.match(base)):
                raise ValueError(f"adapter component {c.name} needs meta.{BASE_META}: the sha256 digest of its base model")
        return v

    def adapter_bases(self) -> set[str]:
        """Digests of the base models this release's adapters were trained on."""
        return {c.meta[BASE_META] for c in self.components if c.kind is ComponentKind.LORA}

    def missing_bases(self, installed: Callable[[str], bool]) -> list[str]:
        """Base digests neither carried by this release nor ``installed`` on the device (sorted)."""
        carried = {c.digest for c in self.components}
        return sorted(d for d in self.adapter_bases() - carried if not installed(d))

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    @property
    def release_id(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            return cls.model_validate_json(data)
        except ValueError as exc:
            raise ValidationError(f"invalid release manifest: {exc}") from exc

    @staticmethod
    def now() -> str:
        return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def base_file_name(digest: str) -> str:
    """Where an adapters-only release finds its installed base model, inside its release directory."""
    return f"base-{digest.split(':', 1)[1][:16]}.gguf"


def require_bases(manifest: Manifest, installed: Callable[[str], bool], device: str = "this device") -> None:
    """Refuse a release whose adapters need a base model that ``device`` does not have installed."""
    missing = manifest.missing_bases(installed)
    if missing:
        names = ", ".join(d[:19] for d in missing)
        raise MissingBaseError(f"release {manifest.ref} carries adapters for base model {names}, "
                               f"which is not installed on {device}",
                               hint="install a release with that base first, or add the base to this release")


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the same object always hashes the same."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def check_file_name(value: str) -> str:
    """A component's file name: plain, and text (the manifest is UTF-8 JSON)."""
    # Installed as releases/<id>/<path>: a path that leaves that directory is an attack.
    if not value or "/" in value or "\\" in value or value in {".", ".."} or value.startswith("."):
        raise ValueError(f"component path {value!r} must be a plain file name")
    # A file name that is not UTF-8 reaches Python as lone surrogates, which JSON cannot carry.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"component file name {value!r} is not valid UTF-8; rename the file") from None
    return value


def check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 chars of lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def first_error(exc: ValueError) -> str:
    """The first problem pydantic found, as 'field: message' (plain text for other errors)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        return f"{where}: {e['msg']}" if where else e["msg"]
    return str(exc)


def parse_version(text: str) -> semver.Version:
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"version {text!r} is not a semantic version", hint="use MAJOR.MINOR.PATCH, e.g. 1.4.0 or 2.0.0-rc.1"
        ) from exc


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split "NAME[@VERSION]"."""
    name, _, version = ref.partition("@")
    try:
        check_name(name, "release name")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if version:
        parse_version(version)
    return name, version or None
