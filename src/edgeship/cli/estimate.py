"""`edgeship estimate MODEL --ctx N`: how much memory llama.cpp will need, and where it fits."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt, WorkspaceOpt
from edgeship.cli.output import console, err_console, human_size, print_json
from edgeship.cli.profiles import workspace_profiles
from edgeship.formats import read_facts
from edgeship.optimize.memory import KV_CACHE_BYTES, estimate_memory
from edgeship.optimize.pipeline import context_warnings
from edgeship.optimize.profiles import pick_profiles
from edgeship.optimize.select import DEFAULT_HEADROOM, Candidate, choose


def estimate(
    model: Path = typer.Argument(..., help="GGUF model file."),
    ctx: int = typer.Option(2048, "--ctx", help="Context size in tokens."),
    profile: list[str] = typer.Option([], "--profile", "-p", help="Check the fit on this profile (repeatable, or a,b,c)."),
    cache_type: str = typer.Option("f16", "--cache-type", help=f"KV cache type: {', '.join(KV_CACHE_BYTES)}."),
    headroom: float = typer.Option(DEFAULT_HEADROOM, "--headroom", help="Share of usable memory kept free."),
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Estimate weights + KV cache + compute buffers + overhead for MODEL at --ctx tokens."""
    facts = read_facts(model)
    e = estimate_memory(facts, ctx, cache_type=cache_type)
    names = [n for item in profile for n in item.split(",") if n]
    profiles = pick_profiles(workspace_profiles(workspace), names) if names else []
    choices = choose([Candidate(facts.file_type, facts.bits_per_weight, e.total)], profiles, headroom)
    warnings = context_warnings(facts, ctx)
    if json_out:
        print_json({"model": facts.to_json(), "estimate": e.to_json(), "cache_type": cache_type,
                    "fits": [{"profile": c.profile, "fits": c.variant is not None, "budget": c.budget, "reason": c.reason} for c in choices],
                    "warnings": warnings})  # fmt: skip
        return
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    console.print(
        f"[bold]{model.name}[/]  {facts.arch}, {facts.n_params / 1e6:.1f}M parameters, {facts.file_type} "
        f"({facts.bits_per_weight:.2f} bits/weight), trained for {facts.ctx_train} tokens"
    )
    table = Table("PART", "BYTES", "", box=None)
    table.add_row("weights", human_size(e.weights), "tensor data, mmap'd")
    table.add_row("KV cache", human_size(e.kv_cache), f"{e.kv_cells} cells x {facts.n_layer} layers, {cache_type}")
    table.add_row("compute buffers", human_size(e.compute), "peak of the graph's live tensors")
    table.add_row("overhead", human_size(e.overhead), "work buffer, threads, vocabulary")
    table.add_row("runtime", human_size(e.runtime), "the process itself")
    table.add_row("[bold]total[/]", f"[bold]{human_size(e.total)}[/]", f"at {ctx} tokens of context")
    console.print(table)
    for c in choices:
        verdict = "[green]fits[/]" if c.variant else "[red]does not fit[/]"
        console.print(f"  {c.profile:<22} {verdict}  needs {human_size(e.total)} of the {human_size(c.budget)} it allows")


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate)
