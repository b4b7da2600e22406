"""`edgeship delta`: make, apply and inspect model-aware patches."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgeship.cli.output import console, human_size, print_json
from edgeship.delta import ENCODERS, PatchStats, apply_patch, make_patch, read_stats

app = typer.Typer(
    help="Delta patches between model files: only the tensors (or chunks) that changed.",
    no_args_is_help=True,
)


def _show(stats: PatchStats) -> None:
    saved = 1 - stats.patch_size / stats.target_size if stats.target_size else 0.0
    console.print(
        f"[bold]{human_size(stats.patch_size)}[/] patch for a {human_size(stats.target_size)} "
        f"target ({saved:.1%} saved), encoder [cyan]{stats.encoder}[/]"
    )
    console.print(
        f"copied {human_size(stats.bytes_copied)} in {stats.copy_ops} ops "
        f"({stats.segments_copied} segments); sent {human_size(stats.bytes_literal)} "
        f"as {human_size(stats.bytes_sent)} in {stats.data_ops} ops"
    )
    if not stats.segments_sent:
        return
    table = Table("segment", "kind", "size", "sent", "coding")
    for seg in stats.segments_sent:
        table.add_row(seg.name, seg.kind, human_size(seg.size), human_size(seg.sent), seg.coding)
    console.print(table)


@app.command()
def make(
    old: Path = typer.Argument(..., help="The file the device has."),
    new: Path = typer.Argument(..., help="The file the device should end up with."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the patch."),
    encoder: str = typer.Option(
        "auto", "--encoder", help=f"One of {', '.join(ENCODERS)}; auto picks by file format."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the patch statistics as JSON."),
) -> None:
    """Write a patch that turns OLD into NEW."""
    stats = make_patch(old, new, output, encoder=encoder)
    if json_out:
        print_json(stats.to_dict())
    else:
        _show(stats)


@app.command()
def apply(
    old: Path = typer.Argument(..., help="The file the patch was made from."),
    patch: Path = typer.Argument(..., help="The patch."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the result."),
    expect: str | None = typer.Option(
        None, "--expect", help="Refuse unless the result is this digest (sha256:<hex>)."
    ),
) -> None:
    """Rebuild the new file from OLD and PATCH, verified against the patch's target digest."""
    digest = apply_patch(old, patch, output, expected_digest=expect)
    console.print(f"wrote {output} ({digest})")


@app.command()
def stats(
    patch: Path = typer.Argument(..., help="The patch."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show ops, bytes copied vs sent, and the per-tensor breakdown of a patch."""
    result = read_stats(patch)
    if json_out:
        print_json(result.to_dict())
    else:
        _show(result)
