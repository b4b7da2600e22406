"""The adapter/lora component kind: validated as an adapter, signed with its base's digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.errors import MissingBaseError, UsageError, ValidationError
from edgeship.release.bundle import ComponentSpec, build_release
from edgeship.release.manifest import BASE_META, Component, ComponentKind, Manifest, require_bases
from edgeship.samples.llama import write_tiny_llama
from edgeship.samples.lora import write_lora
from edgeship.store.digest import hash_file
from edgeship.store.local import LocalBlobStore

BASE = "sha256:" + "b" * 64


def _adapter(base: str | None) -> Component:
    return Component(name="tone", kind=ComponentKind.LORA, path="tone.gguf", digest="sha256:" + "a" * 64, size=1,
                     media_type="application/vnd.gguf", meta={} if base is None else {BASE_META: base})


def _manifest(*components: Component) -> Manifest:
    return Manifest(name="r", version="1.0.0", components=components, created="2026-01-01T00:00:00Z")


def test_missing_bases_are_those_neither_carried_nor_installed() -> None:
    alone = _manifest(_adapter(BASE))
    assert alone.adapter_bases() == {BASE}
    assert alone.missing_bases(lambda d: False) == [BASE]
    assert alone.missing_bases({BASE}.__contains__) == []
    with pytest.raises(MissingBaseError, match="not installed on device d1") as info:
        require_bases(alone, lambda d: False, "device d1")
    assert info.value.hint
    base = Component(name="m", kind=ComponentKind.GGUF, path="m.gguf", digest=BASE, size=1, media_type="application/vnd.gguf")
    assert _manifest(base, _adapter(BASE)).missing_bases(lambda d: False) == []


@pytest.mark.parametrize("base", [None, "sha256:short", 42])
def test_an_adapter_without_a_base_digest_is_not_a_valid_manifest(base: object) -> None:
    with pytest.raises(ValueError, match="needs meta.base"):
        _manifest(_adapter(base))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("lora")
    base = write_tiny_llama(d / "base.gguf")
    return base, write_lora(d / "tone.gguf", base)


def test_the_release_signs_its_adapter_with_its_gguf_or_the_named_base(files: tuple[Path, Path], tmp_path: Path) -> None:
    base, adapter = files
    store = LocalBlobStore(tmp_path / "blobs")
    lora = ComponentSpec(ComponentKind.LORA, adapter, "tone")
    both = build_release("r", "1.0.0", [ComponentSpec(ComponentKind.GGUF, base, "m"), lora], store)
    digest = str(hash_file(base)[0])
    assert both.components[1].meta[BASE_META] == digest and both.missing_bases(lambda d: False) == []
    assert both.components[1].meta["alpha"] == 8.0
    for given in (digest, str(base)):
        alone = build_release("r", "1.0.0", [lora], store, adapter_base=given)
        assert alone.missing_bases(lambda d: False) == [digest]
    with pytest.raises(UsageError, match="need to name their base"):
        build_release("r", "1.0.0", [lora], store)


def test_a_model_is_not_accepted_as_an_adapter(files: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = files
    with pytest.raises(ValidationError, match="general.type=adapter"):
        build_release("r", "1.0.0", [ComponentSpec(ComponentKind.LORA, base, "tone")], LocalBlobStore(tmp_path),
                      adapter_base=str(base))
