"""`edgeship optimize|estimate|profiles` end to end, and the pushed releases in the rollout engine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgeship.loopback import free_port
from edgeship.formats import read_facts
from edgeship.optimize.memory import estimate_memory
from edgeship.release.manifest import Requirements
from edgeship.rollout import AssignmentReason, DeviceFacts, DeviceView, Rollout, place
from edgeship.samples.imagemodel import write_tiny_denoiser
from edgeship.workspace import Workspace

from tests.server.conftest import start_fleet

from .conftest import Cli, write_imatrix

CTX = 1024  # above the model's 512-token training context: a warning, not an error


def test_optimize_pushes_a_release_per_chosen_variant_that_the_engine_honours(
    cli: Cli, workspace: Workspace, source_model: Path, variants: dict[str, Path], eval_text_file: Path, tmp_path: Path
) -> None:
    # A made-up board on which only Q2_K fits (with 10% headroom), and a roomy one.
    need = {t: estimate_memory(read_facts(variants[t]), CTX).total for t in ("Q4_K_M", "Q2_K")}
    tight_ram = math.ceil(need["Q2_K"] / 0.9) + 1
    assert need["Q4_K_M"] > tight_ram * 0.9  # Q4_K_M does not fit the tight board
    (workspace.root / "profiles.yaml").write_text(
        f"profiles:\n  tight-board: {{ram: {tight_ram}, arch: aarch64, usable: 1.0}}\n"
        "  roomy-laptop: {ram: 16GiB, arch: x86_64, usable: 0.5}\n"
    )
    out = tmp_path / "out"
    r = cli("optimize", source_model, "--profiles", "tight-board,roomy-laptop", "--ctx", CTX, "--types", "q4_k_m,Q2_K",
            "--eval-text", eval_text_file, "--eval-ctx", 256, "--threads", 2, "--out", out,
            "--push", "chain", "--version", "1.0.0", "--json")  # fmt: skip
    assert r.code == 0, r.err
    report = json.loads(r.out)
    # The workspace names no server: said beside the report, as `release push --json` says it.
    assert (report.pop("server"), report.pop("not_uploaded")) == (None, "edgeship.toml names no server")
    assert report == json.loads((out / "report.json").read_text())
    assert [v["name"] for v in report["variants"]] == ["F32", "Q4_K_M", "Q2_K"]
    assert report["warnings"] and "training context 512" in report["warnings"][0]
    assert {c["profile"]: c["variant"] for c in report["choices"]} == {"tight-board": "Q2_K", "roomy-laptop": "F32"}
    f32 = report["variants"][0]
    assert f32["kl_divergence"] == 0 and f32["perplexity"] < 4 and f32["metrics"]["generation_tokens_per_s"] > 0
    assert (out / "chain.Q2_K.gguf").is_file()

    releases = {r["variant"]: r for r in report["releases"]}
    assert set(releases) == {"Q2_K", "F32"}
    assert [r.name for r in workspace.releases()] == ["chain-f32", "chain-q2_k"]
    manifest = workspace.load_manifest(workspace.find_release("chain-q2_k", "1.0.0"))
    assert manifest.components[0].size == (out / "chain.Q2_K.gguf").stat().st_size
    req = manifest.requirements
    assert req.min_ram is not None and need["Q2_K"] <= req.min_ram <= tight_ram
    assert req.arch == ("aarch64", "arm64")

    rollout = Rollout(id="r1", release=releases["Q2_K"]["release_id"], requirements=req)
    devices = [
        DeviceView("board", facts=DeviceFacts(ram=tight_ram, arch="aarch64")),
        DeviceView("mac", facts=DeviceFacts(ram=8 << 30, arch="arm64")),
        DeviceView("too-small", facts=DeviceFacts(ram=req.min_ram - 1, arch="aarch64")),
        DeviceView("x86", facts=DeviceFacts(ram=8 << 30, arch="x86_64")),
    ]
    placed = place(rollout, devices)
    assert isinstance(placed["board"], int) and isinstance(placed["mac"], int)
    assert placed["too-small"].reason is AssignmentReason.SKIPPED and "RAM" in placed["too-small"].detail
    assert placed["x86"].reason is AssignmentReason.SKIPPED and "arch" in placed["x86"].detail
    f32_req = Requirements.model_validate(releases["F32"]["requirements"])
    assert f32_req.arch == ("x86_64",)


def test_optimize_pushes_one_release_line_with_the_extra_components_and_health(
    cli: Cli, workspace: Workspace, source_model: Path, tmp_path: Path
) -> None:
    image = write_tiny_denoiser(tmp_path / "denoiser.onnx")
    health = tmp_path / "health.json"
    health.write_text(json.dumps({"command": "test -s denoiser.onnx", "timeout_s": 20}))
    out = tmp_path / "out"
    r = cli("optimize", source_model, "--profiles", "pi5-8gb,jetson-nano-4gb", "--ctx", 256, "--types", "Q8_0", "--out", out,
            "--push", "chain", "--version", "1.0.0", "--release-name", "{name}", "--with", f"vision:model/onnx={image}",
            "--health", health, "--json")  # fmt: skip
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert {c["variant"] for c in report["choices"]} == {"F32"}, "without a text, both profiles take the most bits"
    assert [(x["name"], x["variant"], x["profiles"]) for x in report["releases"]] == [("chain", "F32", ["pi5-8gb", "jetson-nano-4gb"])]
    manifest = workspace.load_manifest(workspace.find_release("chain", "1.0.0"))
    assert [(c.name, c.kind.value) for c in manifest.components] == [("model", "model/gguf"), ("vision", "model/onnx")]
    assert manifest.components[1].size == image.stat().st_size
    assert manifest.health.command == "test -s denoiser.onnx" and manifest.health.timeout_s == 20
    assert manifest.requirements.arch == ("aarch64", "arm64") and manifest.requirements.min_ram


# With TWO_VARIANTS and the profiles of _q4_board_and_laptop, the board takes Q4_0 and the laptop F32.
TWO_VARIANTS = ("--profiles", "tight-board,roomy-laptop", "--ctx", 256, "--types", "Q4_0", "--headroom", 0)


def _q4_board_and_laptop(workspace: Workspace, source_model: Path, variants: dict[str, Path]) -> None:
    """A board where only Q4_0 fits and a laptop that takes the unquantized source."""
    q4 = estimate_memory(read_facts(variants["Q4_0"]), 256).total
    assert estimate_memory(read_facts(source_model), 256).total > q4 + 1
    (workspace.root / "profiles.yaml").write_text(
        f"profiles:\n  tight-board: {{ram: {q4 + 1}, arch: aarch64, usable: 1.0}}\n"
        "  roomy-laptop: {ram: 16GiB, arch: x86_64, usable: 0.5}\n"
    )


def _push_config(cli: Cli, tmp_path: Path, name: str, version: str) -> None:
    config = tmp_path / "app.json"
    config.write_text("{}")
    assert cli("release", "push", name, "--version", version, "-c", f"config={config}").code == 0


def test_optimize_refuses_one_release_name_for_two_variants_before_signing(
    cli: Cli, workspace: Workspace, source_model: Path, variants: dict[str, Path], tmp_path: Path
) -> None:
    _q4_board_and_laptop(workspace, source_model, variants)
    r = cli("optimize", source_model, *TWO_VARIANTS, "--out", tmp_path / "out",
            "--push", "chain", "--version", "1.0.0", "--release-name", "{name}")  # fmt: skip
    assert r.code == 2 and "chose 2 variants" in r.err.splitlines()[0], r.err
    assert workspace.releases() == []


def test_optimize_refuses_a_version_one_variant_line_already_has_before_signing_any(
    cli: Cli, workspace: Workspace, source_model: Path, variants: dict[str, Path], tmp_path: Path
) -> None:
    _q4_board_and_laptop(workspace, source_model, variants)
    # The second line to be signed (the laptop's) is already at the version; the first is new.
    _push_config(cli, tmp_path, "chain-f32", "1.0.0")
    before = workspace.releases()
    r = cli("optimize", source_model, *TWO_VARIANTS, "--out", tmp_path / "out", "--push", "chain", "--version", "1.0.0")
    assert r.code == 5, r.err
    assert "not newer than the latest of chain-f32@1.0.0" in r.err.splitlines()[0] and "higher --version" in r.err
    assert workspace.releases() == before  # chain-q4_0 was not signed either
    assert cli("optimize", source_model, *TWO_VARIANTS, "--out", tmp_path / "out", "--push", "chain", "--version", "1.0.1").code == 0
    assert [(x.name, x.version) for x in workspace.releases()] == [("chain-f32", "1.0.0"), ("chain-f32", "1.0.1"), ("chain-q4_0", "1.0.1")]


def test_optimize_refuses_a_stale_version_of_one_release_line_before_optimizing(
    cli: Cli, workspace: Workspace, source_model: Path, tmp_path: Path
) -> None:
    _push_config(cli, tmp_path, "chain", "1.2.0")
    out = tmp_path / "out"
    r = cli("optimize", source_model, "-p", "pi5-8gb", "--types", "Q4_0", "--out", out,
            "--push", "chain", "--version", "1.1.0", "--release-name", "{name}")  # fmt: skip
    assert r.code == 5 and "not newer than the latest of chain@1.2.0" in r.err.splitlines()[0], r.err
    assert not out.exists(), "refused before quantizing"


def test_optimize_keeps_the_report_when_the_upload_fails(cli: Cli, workspace: Workspace, source_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens: the connection is refused
    r = cli("optimize", source_model, "-p", "pi5-8gb", "--types", "Q4_0", "--out", out,
            "--push", "chain", "--version", "1.0.0", "--server", server, "--token", "t0ken")  # fmt: skip
    assert r.code == 1, r.err
    first = r.err.splitlines()[0]
    assert first.startswith("error: ") and f"the upload to {server} failed: cannot reach" in first and str(out / "report.json") in r.err
    assert "hint: is the server running" in r.err and f"edgeship server sync --server {server}" in r.err
    assert "Traceback" not in r.err
    report = json.loads((out / "report.json").read_text())
    assert [(x["name"], x["version"]) for x in report["releases"]] == [("chain-f32", "1.0.0")]
    assert [(x.name, x.version) for x in workspace.releases()] == [("chain-f32", "1.0.0")]


def test_optimize_push_uploads_to_the_workspace_server_unless_no_upload(cli: Cli, source_model: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """As `release push`: edgeship.toml names the server, so no --server is needed; --no-upload skips it and says so."""
    monkeypatch.delenv("EDGESHIP_SERVER", raising=False)
    fleet = start_fleet(tmp_path / "fleet", "")  # its workspace's edgeship.toml names the server and its token
    try:
        args = (source_model, "-p", "pi5-8gb", "--types", "Q4_0", "--out", tmp_path / "out", "--push", "chain", "-w", fleet.workspace)
        r = cli("optimize", *args, "--version", "1.0.0")
        assert r.code == 0 and f"uploaded to {fleet.url}" in r.out, r.err
        assert "chain-f32@1.0.0" in fleet.admin.get("/v1/admin/repository").json()["releases"]

        r = cli("optimize", *args, "--version", "1.0.1", "--no-upload")
        assert r.code == 0 and "not uploaded (--no-upload)" in " ".join(r.out.split()), r.err
        r = cli("optimize", *args, "--version", "1.0.2", "--no-upload", "--json")
        assert r.code == 0 and json.loads(r.out)["server"] is None and json.loads(r.out)["not_uploaded"] == "--no-upload"
        on_server = fleet.admin.get("/v1/admin/repository").json()["releases"]
        assert "chain-f32@1.0.1" not in on_server and "chain-f32@1.0.2" not in on_server
        assert [(x.name, x.version) for x in Workspace.open(fleet.workspace).releases() if x.name == "chain-f32"] == [
            ("chain-f32", "1.0.0"), ("chain-f32", "1.0.1"), ("chain-f32", "1.0.2")]
    finally:
        fleet.admin.close()
        fleet.server.stop()


def test_optimize_table_without_text_with_an_imatrix(cli: Cli, source_model: Path, tmp_path: Path) -> None:
    imatrix = write_imatrix(tmp_path / "imatrix.gguf", source_model)
    r = cli("optimize", source_model, "-p", "pi3-1gb", "--ctx", 256, "--types", "Q4_0,IQ2_XXS", "--imatrix", imatrix,
            "--threads", 2, "--out", tmp_path)  # fmt: skip
    assert r.code == 0, r.err
    assert "Q4_0" in r.out and "IQ2_XXS" in r.out and "pi3-1gb" in r.out and "report:" in r.out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["variants"][1]["perplexity"] is None  # no text: quality by bits per weight
    assert "IQ2_XXS" in report["variants"][2]["metrics"]["tensor_types"]
    assert report["choices"][0]["variant"] == "F32"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profiles", "pi5-8gb,mars-rover"], "unknown profile: mars-rover"),
        (["--profiles", "pi5-8gb", "--types", "Q4_K_M,Q7_K"], "unknown quantization type: Q7_K"),
        (["--profiles", "pi5-8gb", "--push", "x"], "--push needs --version"),
        (["--profiles", "pi5-8gb", "--eval-text", "SHORT"], "evaluation text is too short"),
        (["--profiles", "pi5-8gb", "--with", "model/onnx=x.onnx", "--health", "h.json"], "--with, --health only applies with --push"),
        (["--profiles", "pi5-8gb", "--push", "x", "--version", "1.0.0", "--with", "model/onnx=missing.onnx"], "--with file not found"),
        (["--profiles", "pi5-8gb", "--push", "x", "--version", "1.0.0", "--with", "model/tflite=x"], "unknown component kind"),
        (["--profiles", "pi5-8gb", "--push", "x", "--version", "1.0.0", "--release-name", "{nom}"], "must use {name}"),
    ],
)
def test_optimize_bad_input_is_one_red_line(cli: Cli, source_model: Path, tmp_path: Path, args: list[str], message: str) -> None:
    short = tmp_path / "short.txt"
    short.write_text("abcabc")
    argv = [str(short) if a == "SHORT" else a for a in args]
    types = [] if "--types" in argv else ["--types", "Q4_0"]
    r = cli("optimize", source_model, *argv, *types, "--out", tmp_path / "out")
    assert r.code == 2
    assert r.err.startswith("error: ") and message in r.err.splitlines()[0]
    assert "Traceback" not in r.err


@pytest.mark.parametrize("component", ["model:config=APP", "config=MODEL"])
def test_optimize_refuses_a_with_component_named_model_before_optimizing(
    cli: Cli, workspace: Workspace, source_model: Path, tmp_path: Path, component: str
) -> None:
    (tmp_path / "app.json").write_text("{}")
    (tmp_path / "model").write_text("{}")  # a file named model: the component's default name
    with_ = component.replace("APP", str(tmp_path / "app.json")).replace("MODEL", str(tmp_path / "model"))
    out = tmp_path / "out"
    r = cli("optimize", source_model, "-p", "pi5-8gb", "--types", "Q4_0", "--out", out,
            "--push", "chain", "--version", "1.0.0", "--with", with_)  # fmt: skip
    assert r.code == 2 and "--with component named 'model'" in r.err.splitlines()[0], r.err
    assert not out.exists(), "refused before quantizing"
    assert workspace.releases() == []


def test_optimize_refuses_a_file_that_is_not_gguf(cli: Cli, tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model at all")
    r = cli("optimize", fake, "--profiles", "pi5-8gb", "--out", tmp_path / "out")
    assert r.code == 2 and "is not a valid GGUF file" in r.err.splitlines()[0]


def test_optimize_refuses_an_already_quantized_model(cli: Cli, variants: dict[str, Path], tmp_path: Path) -> None:
    r = cli("optimize", variants["Q8_0"], "--profiles", "pi5-8gb", "--out", tmp_path)
    assert r.code == 2 and "already quantized (Q8_0)" in r.err


def test_estimate(cli: Cli, source_model: Path) -> None:
    r = cli("estimate", source_model, "--ctx", 4096, "--profile", "pi3-1gb,x86-desktop-rtx4090", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["estimate"]["kv_cache"] == 2 * 2 * 4096 * 2 * 64 * 2
    assert data["estimate"]["total"] == estimate_memory(read_facts(source_model), 4096).total
    assert [f["fits"] for f in data["fits"]] == [True, True]
    assert "training context 512" in data["warnings"][0]
    human = cli("estimate", source_model, "--ctx", 256, "-p", "pi3-1gb")
    assert human.code == 0 and "KV cache" in human.out and "fits" in human.out and human.err == ""


def test_profiles_commands(cli: Cli, workspace: Workspace) -> None:
    (workspace.root / "profiles.yaml").write_text("profiles:\n  lab-box: {ram: 3GiB, arch: riscv64, usable: 0.5}\n")
    listed = cli("profiles", "list", "--json")
    names = [p["name"] for p in json.loads(listed.out)]
    assert "pi5-8gb" in names and names[-1] == "lab-box"
    shown = cli("profiles", "show", "lab-box", "--json")
    assert json.loads(shown.out)["usable_bytes"] == 3 * (1 << 30) // 2
    human = cli("profiles", "show", "jetson-orin-nano")
    assert "40 TOPS" in human.out and "cuda" in human.out
    missing = cli("profiles", "show", "nope")
    assert missing.code == 2 and missing.err.startswith("error: unknown profile: nope")
