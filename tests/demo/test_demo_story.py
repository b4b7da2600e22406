"""`edgeship demo`: the whole story on a real server, real agent processes, runtimes and MQTT.

Asserts on the JSON summary, whose numbers the demo measured (server's device list, the
devices' download events, requests counted by their senders), and that nothing it started
outlives it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from edgeship.cli.main import run
from edgeship.demo.story import run_story
from edgeship.errors import ServerError
from edgeship.workspace import Workspace


@pytest.mark.slow
def test_the_demo_tells_the_whole_story(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    before = set(descendants(os.getpid()))  # other suites' long-lived fixtures may run beside us
    code = run(["demo", "--fast", "--learn", "--devices", "6", "--out", str(out), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert code == 0, s["problems"]
    assert s["ok"] is True and s["problems"] == []
    # --learn: four devices trained v2 on their own text in one round; the candidate, signed as
    # 1.3.0, reached the whole fleet in stages.
    learning = s["learning"]
    assert learning["used"] is True and (learning["accepted"], learning["rejected"], learning["dropped"]) == (4, 0, 0)
    assert learning["loss_after"] < learning["loss_before"]
    assert s["rollouts"]["1.3.0"]["status"] == "completed" and s["health"]["1.3.0"]["committed"] == 6
    assert s["versions"] and set(s["versions"].values()) == {"1.3.0"} and len(s["versions"]) == 6
    v3 = s["rollouts"]["1.2.0"]
    assert v3["status"] in ("paused", "aborted") and v3["rollback"] is True and "pilot" in v3["reason"]
    assert s["rollouts"]["1.1.0"]["status"] == "completed"
    assert s["health"]["1.2.0"]["rolled_back"] >= 1, "v3 must fail its trial somewhere"
    assert s["forged_refused"] is True and "trusted key" in s["forged_error"]
    assert 0 < s["delta"]["bytes_downloaded"] < s["delta"]["full_size"]
    assert s["swap_requests"]["failed"] == 0 and s["swap_requests"]["ok"] > 0
    assert s["mqtt_messages"] > 0
    assert s["notices"] == 6, "every device is told when v2 will switch"
    assert set(map(tuple, s["runtime_releases"].values())) == {("assistant@1.3.0",)}, "the runtimes serve the learned model at the end"
    assert [(a["release"], a["request"]) for a in s["answers"]] == [("assistant@1.0.0", "chat")] * 2
    assert all(a["image_outputs"] and a["answer"] is not None for a in s["answers"])
    assert s["feedback"]["rating"] == 2
    # v1 came from `edgeship optimize --push`: one release line, the image model bundled, the
    # profiles' hardware required, and every agent presenting one of the profiles qualifies.
    assert {o["profile"] for o in s["optimize"]} == {"pi5-8gb", "jetson-nano-4gb"}
    assert s["presented"] == {"pi5-8gb": 3, "jetson-nano-4gb": 3}
    assert s["requirements"]["arch"] == ["aarch64", "arm64"] and s["requirements"]["min_ram"] > 0
    assert s["rollouts"]["1.0.0"]["skipped"] == 0 and s["rollouts"]["1.0.0"]["status"] == "completed"
    ws = Workspace.open(out / "workspace")
    v1 = ws.load_manifest(ws.find_release("assistant", "1.0.0"))
    assert [(c.name, c.kind.value) for c in v1.components] == [("model", "model/gguf"), ("denoiser.onnx", "model/onnx")]
    assert "edgeship optimize" in v1.notes and v1.health.command
    report = Path(s["report"]).read_text()
    assert "On-device learning" in report and f"{learning['loss_after']}" in report
    assert "<svg" in report and "src=" not in report and "href=" not in report, "the report must be self-contained"
    assert json.loads((out / "summary.json").read_text())["ok"] is True
    assert set(descendants(os.getpid())) - before == set(), "the demo left processes running"


@pytest.mark.slow
def test_the_demo_runs_on_a_real_gguf_with_real_answers_and_a_tiny_v2(real_gguf: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    before = set(descendants(os.getpid()))
    code = run(["demo", "--fast", "--devices", "4", "--model", str(real_gguf), "--out", str(out), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert code == 0, s["problems"]
    assert s["ok"] is True and s["model"] == real_gguf.name
    assert set(s["versions"].values()) == {"1.1.0"} and s["swap_requests"]["failed"] == 0
    # Gemma 3 270M has no chat template: v1 is asked for a completion, v2 (which brings one) chats.
    assert sorted((a["release"], a["request"]) for a in s["answers"]) == [("assistant@1.0.0", "completion")] * 2 + [("assistant@1.1.0", "chat")] * 2
    for a in s["answers"]:
        assert "Paris" in a["answer"] and a["image_outputs"] == ["denoised"], a  # a real model knows; the generated one babbles
    # v2 changed only the metadata: each device fetched a few KiB of its 253 MB.
    full, fetched = s["delta"]["full_size"], s["delta"]["bytes_downloaded"]
    assert full >= 4 * real_gguf.stat().st_size and 0 < fetched < 64 * 1024, s["delta"]
    ws = Workspace.open(out / "workspace")
    v1 = ws.load_manifest(ws.find_release("assistant", "1.0.0"))
    assert v1.components[0].digest.endswith(hashlib.sha256(real_gguf.read_bytes()).hexdigest())
    assert v1.components[1].meta["image"]["mode"] == "RGB"  # `release push` recognised the image model
    report = Path(s["report"]).read_text()
    assert real_gguf.name in report and "Paris" in report
    assert set(descendants(os.getpid())) - before == set(), "the demo left processes running"


def test_demo_model_must_be_a_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a model")
    assert run(["demo", "--model", str(bad), "--out", str(tmp_path / "demo")]) == 2
    assert "is not a valid GGUF file" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
    assert run(["demo", "--offline", "--model", str(bad)]) == 2
    assert run(["demo", "--learn", "--model", str(bad), "--out", str(tmp_path / "demo")]) == 2
    assert "--learn fine-tunes the generated tiny LLM" in capsys.readouterr().err


def descendants(pid: int) -> list[int]:
    """Live (non-zombie) processes below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


@pytest.mark.slow
def test_a_story_that_breaks_says_where_and_stops_every_process(tmp_path: Path) -> None:
    def narrate(act: str, _text: str) -> None:
        if act == "infer":  # after the fleet has installed v1: every kind of process is running
            raise RuntimeError("the demo's narrator fell over")

    before = set(descendants(os.getpid()))

    with pytest.raises(ServerError, match="broke during v1: RuntimeError: the demo's narrator fell over"):
        run_story(4, tmp_path / "demo", fast=True, narrate=narrate)
    assert set(descendants(os.getpid())) - before == set(), "a failed demo must stop everything it started"
