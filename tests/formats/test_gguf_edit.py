"""Setting one string in a GGUF's metadata: every other field and every tensor byte stays, the
gguf package and llama.cpp read the result, and a delta from the old file is tiny."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from edgeship.delta import make_patch
from edgeship.errors import UsageError
from edgeship.formats import read_header
from edgeship.formats.gguf_edit import with_string
from edgeship.samples.llama import write_tiny_llama
from edgeship.samples.tensorfiles import write_gguf


def tensor_bytes(path: Path) -> dict[str, bytes]:
    data = path.read_bytes()
    return {t.name: data[t.offset : t.offset + t.n_bytes] for t in read_header(path).tensors}


@pytest.mark.parametrize("alignment", [32, 64])
def test_a_string_is_added_or_replaced_and_nothing_else_changes(tmp_path: Path, alignment: int) -> None:
    rng = np.random.default_rng(1)
    weights = {f"w{i}": rng.standard_normal((8, 32 + i)).astype(np.float32) for i in range(3)}
    meta = {"general.architecture": "llama", "general.alignment": alignment, "general.name": "edit test",
            "tokenizer.ggml.tokens": [f"t{i}" for i in range(2000)], "tokenizer.chat_template": "old"}
    src = write_gguf(tmp_path / "a.gguf", weights, meta)
    before = read_header(src)
    added, replaced = tmp_path / "added.gguf", tmp_path / "replaced.gguf"
    with_string(src, added, "general.description", "x" * 37)  # an odd length: the padding must change
    with_string(src, replaced, "tokenizer.chat_template", "{{ messages }}" * 3)
    for path, key, value in ((added, "general.description", "x" * 37), (replaced, "tokenizer.chat_template", "{{ messages }}" * 3)):
        after = read_header(path)
        assert after.get(key) == value
        assert {k: v for k, v in after.fields.items() if k != key} == {k: v for k, v in before.fields.items() if k != key}
        assert after.array_lengths == before.array_lengths and after.data_offset % alignment == 0
        assert tensor_bytes(path) == tensor_bytes(src)
        reader = gguf.GGUFReader(path)  # the gguf package reads it too
        assert reader.get_field(key).contents() == value
        assert [t.name for t in reader.tensors] == list(weights)
    with pytest.raises(UsageError, match="is the file being read"):
        with_string(src, src, "general.name", "x")


def test_the_edited_model_loads_in_llama_cpp_and_the_delta_costs_the_change(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    src = write_tiny_llama(tmp_path / "tiny.gguf")
    new = tmp_path / "templated.gguf"
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with_string(src, new, "tokenizer.chat_template", template)
    llm = llama_cpp.Llama(str(new), n_ctx=64, verbose=False)
    assert llm.metadata["tokenizer.chat_template"] == template
    assert llm.create_completion("Hi", max_tokens=2, temperature=0)["choices"][0]["text"] is not None
    stats = make_patch(src, new, tmp_path / "d.delta")
    assert stats.patch_size < 1024 + len(template)
