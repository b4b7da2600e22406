"""ONNX dynamic int8 quantization: smaller, close to the float model, and chosen per profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeship.errors import OptimizeError, UsageError
from edgeship.optimize.onnx_quant import (
    accuracy,
    load_inputs,
    optimize_onnx,
    quantize_int8,
    random_inputs,
    session,
)
from edgeship.optimize.profiles import Profile
from edgeship.optimize.report import Report
from edgeship.optimize.tracking import log_report
from edgeship.workspace import Workspace

from .conftest import Cli


def write_mlp(path: Path, *, n_in: int = 64, hidden: int = 512, classes: int = 10, seed: int = 0) -> Path:
    """A two-layer classifier [batch, n_in] -> [batch, classes]: MatMul weights int8 can shrink."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((n_in, hidden)) / np.sqrt(n_in)).astype(np.float32)
    w2 = (rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["a"]),
            helper.make_node("MatMul", ["a", "w2"], ["logits"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mlp(tmp_path_factory.mktemp("onnx") / "mlp.onnx", n_in=512, hidden=4096)  # 8 MiB of float weights


def test_int8_is_smaller_and_close_to_float(mlp: Path, tmp_path: Path) -> None:
    int8 = tmp_path / "mlp.int8.onnx"
    assert quantize_int8(mlp, int8) > 0
    assert int8.stat().st_size < mlp.stat().st_size / 3
    ref, cand = session(mlp), session(int8)
    feeds = random_inputs(ref, samples=32)
    assert feeds[0]["x"].shape == (1, 512)  # the symbolic batch dimension becomes 1
    acc = accuracy(ref, cand, feeds)
    assert 0 < acc.relative_rmse < 0.05 and acc.cosine > 0.99
    assert acc.top1_agreement is not None and acc.top1_agreement >= 0.9
    same = accuracy(ref, ref, feeds)
    assert same.max_abs_error == 0 and same.top1_agreement == 1.0


def test_sample_inputs_from_npz(mlp: Path, tmp_path: Path) -> None:
    ref = session(mlp)
    np.savez(tmp_path / "in.npz", x=np.ones((5, 512), np.float32))
    feeds = load_inputs(tmp_path / "in.npz", ref)
    assert len(feeds) == 5 and feeds[0]["x"].shape == (1, 512)
    np.savez(tmp_path / "wrong.npz", y=np.ones((5, 512), np.float32))
    with pytest.raises(UsageError, match="lacks inputs x"):
        load_inputs(tmp_path / "wrong.npz", ref)


def test_selection_between_float_and_int8(mlp: Path, tmp_path: Path) -> None:
    roomy = Profile("roomy", "roomy", 1 << 34, "x86_64", None, None, 0.5)
    report = optimize_onnx(mlp, tmp_path, [roomy])
    float_, int8 = report.variants
    assert (float_.name, int8.name) == ("float", "int8")
    assert int8.bits_per_weight < 9 < float_.bits_per_weight
    assert float_.memory > int8.memory > 0
    # A board whose budget sits between the two takes int8; a roomy one keeps the float model.
    between = Profile("between", "between", (float_.memory + int8.memory) // 2, "aarch64", None, None, 1.0)
    report = optimize_onnx(mlp, tmp_path, [roomy, between], headroom=0.0)
    assert [c.variant for c in report.choices] == ["float", "int8"]


def test_cli_onnx_push(cli: Cli, mlp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESHIP_KEY_PASSPHRASE", raising=False)
    ws = Workspace.init(tmp_path / "ws", passphrase=None)
    r = cli("optimize", mlp, "--profiles", "coral-dev-board", "--out", tmp_path / "out", "--push", "classifier", "--version", "2.0.0", "-w", ws.root)
    assert r.code == 0, r.err
    assert "int8" in r.out and "pushed classifier-float@2.0.0" in r.out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["kind"] == "onnx" and report["variants"][1]["metrics"]["cosine"] > 0.99
    manifest = ws.load_manifest(ws.find_release("classifier-float"))
    assert manifest.components[0].kind.value == "model/onnx"
    wrong = cli("optimize", mlp, "--profiles", "pi5-8gb", "--types", "Q4_0")
    assert wrong.code == 2 and "--types does not apply to a ONNX model" in wrong.err


def test_mlflow_logs_a_run_per_variant(cli: Cli, mlp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "mlruns").as_uri()
    empty = Report(source=mlp, kind="onnx", ctx=None, headroom=0.1, profiles=[], variants=[], choices=[])
    with pytest.raises(OptimizeError, match="MLflow at file:.* refused the run: The filesystem tracking backend"):
        log_report(empty, mlp, store)  # MLflow 3 refuses a directory store unless asked
    # A directory store keeps the test offline; opt in to it.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    r = cli("optimize", mlp, "--profiles", "pi5-8gb", "--out", tmp_path / "out", "--mlflow", store)
    assert r.code == 0, r.err
    run_id = r.out.split("mlflow run: ")[1].split()[0]
    client = MlflowClient(tracking_uri=store)
    parent = client.get_run(run_id)
    assert parent.data.params["profiles"] == "pi5-8gb"
    assert parent.data.tags["choice.pi5-8gb"] == "float"
    assert [a.path for a in client.list_artifacts(run_id)] == ["report.json"]
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    by_name = {c.info.run_name: c.data for c in children}
    assert set(by_name) == {"float", "int8"}
    assert by_name["int8"].metrics["cosine"] > 0.99 and by_name["int8"].metrics["bits_per_weight"] < 9
