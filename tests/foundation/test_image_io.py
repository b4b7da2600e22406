"""Image I/O of ONNX components: recognised from the model's shapes, set or overridden by
`release push --image-io`, refused with a line saying what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeship.errors import UsageError
from edgeship.release.imageio import ImageIO, detect, resolve
from edgeship.workspace import Workspace


def io(name: str, shape: list[Any], elem_type: str = "FLOAT") -> dict[str, Any]:
    return {"name": name, "shape": shape, "elem_type": elem_type}


def meta(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inputs": inputs, "outputs": outputs}


@pytest.mark.parametrize("inputs, outputs, want", [
    ([io("x", [1, 3, 32, 32])], [io("y", [1, 3, 32, 32])], {"input": "x", "output": "y", "layout": "NCHW", "mode": "RGB"}),
    ([io("x", ["N", 256, 256, 1])], [io("y", ["batch", 256, 256, 1])], {"input": "x", "output": "y", "layout": "NHWC", "mode": "L"}),
    ([io("x", [1, 3, "h", "w"], "FLOAT16")], [io("logits", [1, 1000]), io("y", [1, 3, "h2", "w2"], "FLOAT16")],
     {"input": "x", "output": "y", "layout": "NCHW", "mode": "RGB"}),
])
def test_image_to_image_models_are_recognised(inputs: list, outputs: list, want: dict) -> None:
    assert detect(meta(inputs, outputs)) == want


@pytest.mark.parametrize("inputs, outputs", [
    ([io("x", [1, 3, 224, 224])], [io("logits", [1, 1000])]),  # a classifier: image in, no image out
    ([io("x", [1, 3, 32, 32])], [io("y", [1, 3, 64, 64])]),  # another size out
    ([io("x", [1, 4, 32, 32])], [io("y", [1, 4, 32, 32])]),  # 4 channels
    ([io("x", [1, 3, 32, 32], "UINT8")], [io("y", [1, 3, 32, 32], "UINT8")]),  # not float pixels
    ([io("ids", [1, 128], "INT64")], [io("y", [1, 128])]),
    ([io("x", [1, 3, 32, 32]), io("mask", [1, 1, 32, 32])], [io("y", [1, 3, 32, 32])]),  # a second input to invent
])
def test_other_models_are_not_taken_for_image_models(inputs: list, outputs: list) -> None:
    assert detect(meta(inputs, outputs)) is None


DENOISER = meta([io("image", [1, 3, 32, 32])], [io("denoised", [1, 3, 32, 32])])
CLASSIFIER = meta([io("pixels", [1, 3, 224, 224])], [io("logits", [1, 1000])])


def test_an_override_keeps_what_it_does_not_name_and_off_turns_it_off() -> None:
    given = ImageIO.parse("denoiser:mean=0.485|0.456|0.406,std=0.229|0.224|0.225,scale=1/255,size=64x48,restore_size=no")
    assert given.component == "denoiser"
    image = resolve("denoiser", DENOISER, given)
    assert image is not None
    assert (image["input"], image["output"], image["layout"], image["mode"]) == ("image", "denoised", "NCHW", "RGB")
    assert image["mean"] == [0.485, 0.456, 0.406] and image["size"] == [64, 48] and image["restore_size"] is False
    assert image["scale"] == pytest.approx(1 / 255)
    assert resolve("denoiser", DENOISER, ImageIO.parse("denoiser:off")) is None
    # A model not recognised gets image I/O when asked (its output read as the picture).
    forced = resolve("cls", CLASSIFIER, ImageIO.parse("output=logits,layout=nchw"))
    assert forced is not None and forced["output"] == "logits" and forced["input"] is None
    assert resolve("cls", CLASSIFIER, None) is None


@pytest.mark.parametrize("text, says", [
    ("denoiser:mode", "not understood"),
    ("denoiser:colour=red", "unknown image I/O key 'colour'"),
    ("size=big", "size='big' not understood"),
    ("scale=1/0", "scale='1/0' not understood"),
    ("restore_size=maybe", "not understood"),
])
def test_bad_image_io_options_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        ImageIO.parse(text)


@pytest.mark.parametrize("text, says", [
    ("layout=CHW", "layout"),
    ("mode=L,mean=0.1|0.2|0.3", "mean needs 1 or 1 values"),
    ("std=0", "std values must not be 0"),
    ("input=nosuch", "names input 'nosuch'; the model's inputs: image"),
])
def test_image_io_the_model_cannot_have_is_refused(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        resolve("denoiser", DENOISER, ImageIO.parse(text))


def test_push_records_the_image_io_and_refuses_an_option_for_no_onnx_component(cli, workspace: Workspace, models: dict[str, Path],
                                                                                  tmp_path: Path) -> None:
    r = cli("release", "push", "vision", "--version", "1.0.0", "-c", f"denoiser:model/onnx={models['onnx']}", "-c", f"model/gguf={models['gguf']}")
    assert r.code == 0, r.err
    assert "image I/O: image -> denoised, NCHW RGB" in r.out
    manifest = workspace.load_manifest(workspace.find_release("vision"))
    image = {c.name: c.meta.get("image") for c in manifest.components}
    assert image["tiny.gguf"] is None
    assert image["denoiser"] == {"input": "image", "output": "denoised", "layout": "NCHW", "mode": "RGB", "size": None,
                                 "scale": 1 / 255, "mean": [0.0], "std": [1.0], "restore_size": True}
    r = cli("release", "push", "vision", "--version", "1.1.0", "-c", f"denoiser:model/onnx={models['onnx']}", "--image-io", "mode=L", "--json")
    assert r.code == 0, r.err
    manifest = workspace.load_manifest(workspace.find_release("vision"))
    assert manifest.components[0].meta["image"]["mode"] == "L"

    before = len(workspace.releases())
    for args, says in [
        (["-c", f"model/gguf={models['gguf']}", "--image-io", "mode=L"], "has no ONNX components"),
        (["-c", f"denoiser:model/onnx={models['onnx']}", "--image-io", "other:mode=L"], "names 'other', which is not an ONNX component"),
        (["-c", f"denoiser:model/onnx={models['onnx']}", "--image-io", "mode=L", "--image-io", "denoiser:off"], "given twice"),
    ]:
        r = cli("release", "push", "vision", "--version", "2.0.0", *args)
        assert r.code == 2 and says in " ".join(r.err.split()), r.err
        assert "Traceback" not in r.err
    assert len(workspace.releases()) == before

