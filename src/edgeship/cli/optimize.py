"""`edgeship optimize MODEL --profiles …`: quantize, measure, pick a variant per profile, push."""

from __future__ import annotations

from pathlib import Path

import typer
from click.core import ParameterSource
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from edgeship.cli.common import JsonOpt, WorkspaceOpt, open_workspace
from edgeship.cli.output import console, err_console, human_size, print_json
from edgeship.cli.profiles import workspace_profiles
from edgeship.cli.release import read_health
from edgeship.cli.remote import CaOpt, TokenOpt
from edgeship.cli.upload import NoUploadOpt, UploadServerOpt, upload_signed
from edgeship.errors import UsageError
from edgeship.optimize.onnx_quant import optimize_onnx
from edgeship.optimize.pipeline import Hooks, optimize_gguf
from edgeship.optimize.profiles import Profile, pick_profiles
from edgeship.optimize.publish import (
    DEFAULT_RELEASE_NAME,
    check_extra,
    check_template,
    check_versions,
    names_before_optimizing,
    publish_choices,
)
from edgeship.optimize.report import Report
from edgeship.optimize.select import DEFAULT_HEADROOM
from edgeship.optimize.tracking import log_report
from edgeship.release.bundle import ComponentSpec


def _progress_hooks(progress: Progress) -> Hooks:
    status = progress.add_task("", total=None)
    current: dict[str, TaskID] = {}

    def quantize_start(qtype: str) -> None:
        current["task"] = progress.add_task(f"quantize {qtype}", total=None)

    def tensor(done: int, total: int, name: str) -> None:
        progress.update(current["task"], completed=done, total=total)

    return Hooks(status=lambda text: progress.update(status, description=text), quantize_start=quantize_start, tensor=tensor)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# The measured columns per model kind: (header, variant field or metric, format).
_MEASURES: dict[str, list[tuple[str, str, str]]] = {
    "gguf": [("PPL", "perplexity", ".3f"), ("KL", "kl_divergence", ".4f"), ("TOP-1", "top1_agreement", ".1%"),
             ("PROMPT T/S", "prompt_tokens_per_s", ".0f"), ("GEN T/S", "generation_tokens_per_s", ".1f")],
    "onnx": [("REL RMSE", "relative_rmse", ".2e"), ("COSINE", "cosine", ".6f"), ("TOP-1", "top1_agreement", ".1%"),
             ("INFER/S", "inferences_per_s", ".0f")],
}  # fmt: skip


def _print_variants(report: Report) -> None:
    measures = _MEASURES[report.kind]
    memory = f"MEMORY @{report.ctx}" if report.ctx else "MEMORY"
    table = Table("VARIANT", "FILE", "BITS/W", memory, *(h for h, _, _ in measures), "QUANT S", box=None)
    for v in report.variants:
        values = {**v.metrics, "perplexity": v.perplexity, "kl_divergence": v.kl_divergence}
        table.add_row(
            v.name + (" (source)" if v.source else ""),
            human_size(v.file_bytes),
            f"{v.bits_per_weight:.2f}",
            human_size(v.memory),
            *(_fmt(values.get(key), spec) for _, key, spec in measures),
            _fmt(v.quantize_seconds, ".2f"),
        )
    console.print(table)


def _print_choices(report: Report) -> None:
    choices = Table("PROFILE", "CHOICE", "WHY", box=None)
    for c in report.choices:
        choices.add_row(c.profile, c.variant or "[red]none[/]", c.reason)
    console.print(choices)


def optimize(
    context: typer.Context,
    model: Path = typer.Argument(..., help="F32/F16/BF16 GGUF model, or a float ONNX model (.onnx), to fit to the devices."),
    profiles: str = typer.Option(..., "--profiles", "-p", help="Comma-separated profile names (see `edgeship profiles list`)."),
    ctx: int = typer.Option(2048, "--ctx", help="Context size the devices will run with (memory is estimated for it)."),
    eval_text: Path | None = typer.Option(None, "--eval-text", help="Text file to measure perplexity and KL divergence on."),
    eval_ctx: int = typer.Option(512, "--eval-ctx", help="Window for the perplexity (capped at --ctx)."),
    types: str | None = typer.Option(None, "--types", help="Quantization types, e.g. Q8_0,Q4_K_M (default: Q8_0…Q2_K)."),
    imatrix: Path | None = typer.Option(None, "--imatrix", help="GGUF importance matrix (llama-imatrix) to guide quantization."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Directory for the variants and report.json (default: ./optimized/<model>)."),
    inputs: Path | None = typer.Option(None, "--inputs", help="ONNX: sample inputs (.npz, one array per input name); default random."),
    headroom: float = typer.Option(DEFAULT_HEADROOM, "--headroom", help="Share of a profile's usable memory kept free."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for llama.cpp (default: up to 4)."),
    mlflow: str | None = typer.Option(None, "--mlflow", help="Log the run to this MLflow tracking URI (needs the mlflow extra)."),
    push: str | None = typer.Option(None, "--push", help="Publish one signed release per chosen variant, named NAME-<variant> (see --release-name)."),
    version: str | None = typer.Option(None, "--version", "-v", help="Version of the pushed releases."),
    release_name: str = typer.Option(
        DEFAULT_RELEASE_NAME, "--release-name",
        help="Name of each pushed release from {name} (--push) and {variant}; '{name}' keeps one release line when every profile chose the same variant.",
    ),
    with_: list[str] = typer.Option(
        [], "--with", help="[NAME:]KIND=PATH added to every pushed release beside the model (repeatable), as `release push -c` takes it.",
    ),
    health: Path | None = typer.Option(None, "--health", help="JSON file with the health suite devices run after switching (as `release push --health`)."),
    server: str | None = UploadServerOpt,
    no_upload: bool = NoUploadOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Quantize MODEL, measure every variant, and pick the best that fits each profile.

    GGUF: llama.cpp quantization to each --types value. ONNX: onnxruntime dynamic int8.
    """
    is_onnx = model.suffix.lower() == ".onnx"
    misplaced = [flag for flag, given in (("--eval-text", eval_text), ("--types", types), ("--imatrix", imatrix)) if is_onnx and given] + (
        ["--inputs"] if inputs and not is_onnx else []
    )
    if misplaced:
        raise UsageError(f"{', '.join(misplaced)} does not apply to a {'ONNX' if is_onnx else 'GGUF'} model")
    if push and not version:
        raise UsageError("--push needs --version", hint="e.g. --push assistant --version 1.0.0")
    # --server counts only when typed: an exported $EDGESHIP_SERVER must not stop a run without --push.
    typed_server = context.get_parameter_source("server") is ParameterSource.COMMANDLINE
    pushing = [flag for flag, given in (("--with", with_), ("--health", health), ("--server", typed_server), ("--no-upload", no_upload),
                                         ("--release-name", release_name != DEFAULT_RELEASE_NAME)) if given]
    if pushing and not push:
        raise UsageError(f"{', '.join(pushing)} only applies with --push", hint="e.g. --push assistant --version 1.0.0")
    check_template(release_name)
    extra = [ComponentSpec.parse(c) for c in with_]  # checked before the slow part: a typo fails at once
    check_extra(extra)
    missing = [str(c.path) for c in extra if not c.path.is_file()]
    if missing:
        raise UsageError(f"--with file not found: {', '.join(missing)}")
    suite = read_health(health)
    if not 0 <= headroom < 1:
        raise UsageError(f"--headroom must be in [0, 1), got {headroom}")
    chosen = pick_profiles(workspace_profiles(workspace), [n.strip() for n in profiles.split(",") if n.strip()])
    text = None
    if eval_text is not None:
        try:
            text = eval_text.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the evaluation text {eval_text}: {exc}") from exc
    ws = open_workspace(workspace) if push else None
    if ws is not None and push and version:
        # The names that hang on the chosen variants are checked again once those are known.
        check_versions(ws, names_before_optimizing(push, release_name), version)
    out_dir = out or Path("optimized") / model.stem
    if is_onnx:
        with err_console.status("quantizing to int8 and measuring…"):
            report = optimize_onnx(model, out_dir, chosen, inputs=inputs, headroom=headroom)
    else:
        report = _run_gguf(model, out_dir, chosen, types, imatrix, ctx, text, eval_ctx, headroom, threads)
    if ws is not None and push and version:
        publish_choices(ws, report, push, version, extra=extra, health=suite, name_template=release_name)
    # The report and the run are kept before the upload: a long run outlives a refused upload.
    path = report.write(out_dir)
    run_id = log_report(report, path, mlflow) if mlflow else None
    kept = f"the releases are signed in the workspace and {path} is written"
    upload = upload_signed(ws, server, no_upload, token, ca, kept) if ws is not None else None
    if json_out:
        print_json({**report.to_json(), **(upload.to_json() if upload else {})})
        return
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    _print_variants(report)
    _print_choices(report)
    for r in report.releases:
        console.print(f"[green]pushed[/] {r.name}@{r.version} ({r.variant}) for {', '.join(r.profiles)}  release {r.release_id[:16]}…")
    if upload:
        upload.say()
    console.print(f"report: {path}")
    if run_id:
        console.print(f"mlflow run: {run_id}")


def _run_gguf(
    model: Path,
    out_dir: Path,
    chosen: list[Profile],
    types: str | None,
    imatrix: Path | None,
    ctx: int,
    text: str | None,
    eval_ctx: int,
    headroom: float,
    threads: int | None,
) -> Report:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        return optimize_gguf(
            model,
            out_dir,
            chosen,
            types=types.split(",") if types else None,
            imatrix=imatrix,
            ctx=ctx,
            eval_text=text,
            eval_ctx=eval_ctx,
            headroom=headroom,
            n_threads=threads,
            hooks=_progress_hooks(progress),
        )


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize)
