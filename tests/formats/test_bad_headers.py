"""Damaged model headers and patches are refused in our words: which field, at which byte, is wrong.

Every case cuts or overwrites real bytes of a real file and asserts the kind of message, so a
library's text ("index 0 is out of bounds", "Expecting value", "Wire format was corrupt") or a
vague "truncated" for an absurd length would fail here.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard as zstd

from edgeship.delta import apply_patch, make_patch, read_stats
from edgeship.delta.format import Data, End, Header, Transform, encode_block
from edgeship.errors import DeltaError, EdgeshipError, ValidationError
from edgeship.formats import read_facts
from edgeship.release.inspect import inspect_component
from edgeship.release.manifest import ComponentKind
from edgeship.samples.tensorfiles import write_gguf, write_onnx, write_safetensors

LIBRARY_WORDS = re.compile(r"larger dtype|out of bounds|axis \d|Expecting|codec can|Wire format|ModelProto|Traceback|Errno", re.I)


def refused(kind: ComponentKind, path: Path, pattern: str) -> str:
    with pytest.raises(ValidationError) as info:
        inspect_component(kind, path)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert not LIBRARY_WORDS.search(message), message
    return message


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    meta = {
        "general.architecture": "llama",
        "llama.block_count": 1,
        "llama.embedding_length": 64,
        "llama.attention.head_count": 1,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(2000)],
    }
    return write_gguf(tmp_path / "m.gguf", {"w": np.ones((4, 64), np.float32)}, meta)


def patched(path: Path, offset: int, data: bytes, name: str = "bad.gguf") -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    out = path.with_name(name)
    out.write_bytes(bytes(raw))
    return out


def cut(path: Path, keep: int, name: str = "cut.bin") -> Path:
    out = path.with_name(name)
    out.write_bytes(path.read_bytes()[:keep])
    return out


# -- paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ComponentKind))
def test_a_directory_is_called_a_directory(kind: ComponentKind, tmp_path: Path) -> None:
    refused(kind, tmp_path, "is a directory, not a file")
    refused(kind, tmp_path / "missing", "does not exist")


def test_estimate_of_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is a directory, not a file"):
        read_facts(tmp_path)


# -- GGUF --------------------------------------------------------------------------------


def test_gguf_absurd_key_length_names_the_length_and_the_offset(gguf_file: Path) -> None:
    # The first metadata key's u64 length sits at byte 24, after magic, version and the two counts.
    bad = patched(gguf_file, 24, struct.pack("<Q", 2**60))
    refused(ComponentKind.GGUF, bad, rf"a metadata key at byte 24 claims {2**60} bytes, more than the whole \d+-byte file \(a corrupt length, or a truncated file\)")


def test_gguf_absurd_counts(gguf_file: Path) -> None:
    bad = patched(gguf_file, 16, struct.pack("<Q", 2**40))
    refused(ComponentKind.GGUF, bad, rf"a header of {2**40} metadata entries and 1 tensors at byte 8 claims \d+ bytes, more than the whole")


def test_gguf_absurd_array_length(gguf_file: Path) -> None:
    raw = gguf_file.read_bytes()
    at = raw.index(b"tokenizer.ggml.tokens") + len("tokenizer.ggml.tokens") + 4  # skip the value type
    bad = patched(gguf_file, at + 4, struct.pack("<Q", 2**50))
    refused(ComponentKind.GGUF, bad, rf"array 'tokenizer.ggml.tokens' of {2**50} items at byte {at} claims")


def test_gguf_unknown_value_type_and_version(gguf_file: Path) -> None:
    raw = gguf_file.read_bytes()
    at = raw.index(b"llama.block_count") + len("llama.block_count")
    refused(ComponentKind.GGUF, patched(gguf_file, at, struct.pack("<I", 77)), rf"metadata 'llama.block_count' at byte {at} has unknown value type 77")
    refused(ComponentKind.GGUF, patched(gguf_file, 4, struct.pack("<I", 9)), "GGUF version 9 is not supported")
    refused(ComponentKind.GGUF, patched(gguf_file, 4, struct.pack(">I", 3)), "big-endian")


def test_gguf_tensor_info_faults(gguf_file: Path) -> None:
    raw = gguf_file.read_bytes()
    name_at = raw.rindex(b"\x01\x00\x00\x00\x00\x00\x00\x00w")  # the tensor name's length, then "w"
    dims_at = name_at + 8 + 1
    refused(ComponentKind.GGUF, patched(gguf_file, dims_at, struct.pack("<I", 9)), rf"tensor 'w' at byte {name_at} has 9 dimensions")
    type_at = dims_at + 4 + 2 * 8
    refused(ComponentKind.GGUF, patched(gguf_file, type_at, struct.pack("<I", 250)), "tensor 'w' has unknown type 250")


@pytest.mark.parametrize("keep", [0, 3, 20, 60, 5000, 20000, -10])
def test_gguf_truncated(gguf_file: Path, keep: int) -> None:
    size = gguf_file.stat().st_size
    short = cut(gguf_file, keep % size if keep >= 0 else size + keep, "cut.gguf")
    message = refused(ComponentKind.GGUF, short, r"is not a valid GGUF file: ")
    if keep == 20000:  # inside the vocabulary: the array's count still fits, one of its strings does not
        assert re.search(r"in array 'tokenizer.ggml.tokens' at byte \d+ needs \d+ bytes, but the file ends \d+ bytes later \(truncated\?\)", message), message
    elif keep == -10:
        assert re.search(r"tensor 'w' \(1024 bytes at byte \d+\) ends past the end of the \d+-byte file", message), message
    elif keep >= 24:
        assert re.search(r"needs \d+ bytes, but the file ends \d+ bytes later \(truncated\?\)|claims \d+ bytes, more than the whole", message), message
    else:
        assert "shorter than the 24-byte fixed header" in message, message


def test_estimate_reads_through_the_same_checks(gguf_file: Path) -> None:
    with pytest.raises(ValidationError, match=r"a metadata key at byte 24 claims \d+ bytes"):
        read_facts(patched(gguf_file, 24, struct.pack("<Q", 2**60)))


# -- safetensors -------------------------------------------------------------------------


@pytest.fixture
def st_file(tmp_path: Path) -> Path:
    return write_safetensors(tmp_path / "m.safetensors", {"a": np.ones((4, 4), np.float32), "b": np.arange(3)})


def with_header(path: Path, header: object, data: bytes = b"\0" * 88) -> Path:
    raw = json.dumps(header).encode()
    out = path.with_name("bad.safetensors")
    out.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return out


def test_safetensors_length_field(st_file: Path) -> None:
    refused(ComponentKind.SAFETENSORS, cut(st_file, 5, "c.safetensors"), "it is 5 bytes long, too short for the 8-byte header length")
    refused(ComponentKind.SAFETENSORS, patched(st_file, 0, struct.pack("<Q", 2**62), "c.safetensors"), rf"says {2**62} bytes, but only \d+ follow")
    huge = st_file.with_name("huge.safetensors")
    with huge.open("wb") as f:  # a sparse file: the length fits, but is over the format's limit
        f.write(struct.pack("<Q", 200 * 2**20))
        f.truncate(8 + 200 * 2**20)
    refused(ComponentKind.SAFETENSORS, huge, "over the format's 104857600-byte limit")
    refused(ComponentKind.SAFETENSORS, cut(st_file, 40, "c.safetensors"), r"header length field says \d+ bytes, but only 32 follow")


def test_safetensors_json_faults(st_file: Path) -> None:
    (n,) = struct.unpack("<Q", st_file.read_bytes()[:8])
    refused(ComponentKind.SAFETENSORS, patched(st_file, 8, b"[", "c.safetensors"), r"its header is not valid JSON \(byte \d+\)")
    refused(ComponentKind.SAFETENSORS, patched(st_file, 9, b"\xff", "c.safetensors"), r"its header is not UTF-8 text \(byte 9\)")
    assert n > 2
    refused(ComponentKind.SAFETENSORS, with_header(st_file, [1, 2]), "not an object of tensors")
    deep = st_file.with_name("deep.safetensors")
    raw = b"[" * 100_000 + b"]" * 100_000
    deep.write_bytes(struct.pack("<Q", len(raw)) + raw)
    refused(ComponentKind.SAFETENSORS, deep, "nests JSON too deeply")


def test_safetensors_tensor_entries(st_file: Path) -> None:
    ok = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    refused(ComponentKind.SAFETENSORS, with_header(st_file, {"x": {"dtype": "F32"}}), "tensor 'x' lacks its dtype, shape or data_offsets")
    refused(ComponentKind.SAFETENSORS, with_header(st_file, {"x": {**ok, "shape": "2x2"}}), "tensor 'x' has shape '2x2', not a list of sizes")
    refused(ComponentKind.SAFETENSORS, with_header(st_file, {"x": {**ok, "data_offsets": [0, 10**6]}}), r"tensor 'x' data 0\.\.1000000 lies outside the 88-byte data area")
    refused(ComponentKind.SAFETENSORS, with_header(st_file, {"x": {**ok, "shape": [3, 3]}}), "tensor 'x' holds 16 bytes, but F32 of shape .* needs 36")
    refused(ComponentKind.SAFETENSORS, with_header(st_file, {"x": ok, "y": {**ok, "data_offsets": [8, 24]}}), "tensors 'x' and 'y' overlap")


# -- ONNX and configs --------------------------------------------------------------------


def test_onnx_truncated_and_garbage(tmp_path: Path) -> None:
    model = write_onnx(tmp_path / "m.onnx", {"w": np.ones((4, 4), np.float32)})
    refused(ComponentKind.ONNX, cut(model, model.stat().st_size // 2, "c.onnx"), "do not parse as an ONNX protobuf")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 64)
    refused(ComponentKind.ONNX, junk, "do not parse as an ONNX protobuf")


def test_json_config(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"a": 1,\n "b": }')
    refused(ComponentKind.CONFIG, config, r"not valid JSON \(line 2, column 7\)")


# -- delta patches -----------------------------------------------------------------------


def test_delta_paths(gguf_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    patch = tmp_path / "p.esd"
    make_patch(gguf_file, gguf_file, patch)
    for call, pattern in [
        (lambda: make_patch(folder, gguf_file, patch), "old file .* is a directory, not a file"),
        (lambda: make_patch(gguf_file, gguf_file, folder), "patch output .* is a directory"),
        (lambda: apply_patch(gguf_file, folder, tmp_path / "out"), "patch .* is a directory, not a file"),
        (lambda: apply_patch(gguf_file, patch, folder), "output .* is a directory"),
        (lambda: read_stats(folder), "patch .* is a directory, not a file"),
    ]:
        with pytest.raises(ValidationError, match=pattern):
            call()
    assert folder.is_dir() and not list(folder.iterdir())


def test_delta_damaged_zstd_frame(gguf_file: Path, tmp_path: Path) -> None:
    target = b"x" * 100
    frame = bytearray(zstd.ZstdCompressor(write_checksum=True).compress(target))
    frame[-4:] = b"\0\0\0\0"  # the frame's content checksum
    header = Header(hashlib.sha256(gguf_file.read_bytes()).digest(), b"\0" * 32, gguf_file.stat().st_size, 100, "generic")
    patch = tmp_path / "z.esd"
    blocks = [Data(Transform.PLAIN, 1, 0, 0, 100, bytes(frame)), End(b"")]
    patch.write_bytes(header.encode() + b"".join(encode_block(b) for b in blocks))
    with pytest.raises(DeltaError, match="zstd frame is damaged") as info:
        apply_patch(gguf_file, patch, tmp_path / "out")
    assert not LIBRARY_WORDS.search(str(info.value)) and "checksum" not in str(info.value).split(":")[-1]
    assert not (tmp_path / "out").exists()


def test_delta_trailer_garbage(gguf_file: Path, tmp_path: Path) -> None:
    header = Header(b"\0" * 32, b"\0" * 32, 0, 0, "generic")
    patch = tmp_path / "t.esd"
    patch.write_bytes(header.encode() + encode_block(End(b"\0" + b"[" * 100_000)))
    with pytest.raises(DeltaError, match="trailer is not the segment list") as info:
        read_stats(patch)
    assert isinstance(info.value, EdgeshipError) and not LIBRARY_WORDS.search(str(info.value))
