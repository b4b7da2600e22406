"""Entry point: builds the typer app from the command groups and turns errors into exit codes."""

from __future__ import annotations

import sys

import click
import typer

from edgeship import __version__
from edgeship.cli.output import err_console
from edgeship.errors import EdgeshipError

app = typer.Typer(
    name="edgeship",
    help="Ship AI models to fleets of edge devices: build, shrink, sign, ship, run, watch, roll back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeship {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Ship AI models to fleets of edge devices: build, shrink, sign, ship, run, watch, roll back."""


def _register() -> None:
    # One module per command group; each adds itself to the root app.
    from edgeship.cli import (
        agent,
        delta,
        demo,
        estimate,
        feedback,
        init,
        keys,
        optimize,
        profiles,
        release,
        runtime,
        simulate,
        verify,
    )

    demo.register(app)
    init.register(app)
    app.add_typer(release.app, name="release")
    verify.register(app)
    app.add_typer(keys.app, name="keys")
    app.add_typer(delta.app, name="delta")
    simulate.register(app)
    app.add_typer(agent.app, name="agent")
    feedback.register(app)
    app.add_typer(runtime.app, name="runtime")
    from edgeship.cli import admin, certs, device, experiment, fleet, mqtt, rollout, server, webhook

    app.add_typer(server.app, name="server")
    app.add_typer(device.app, name="device")
    app.add_typer(admin.app, name="admin")
    app.add_typer(certs.app, name="certs")
    fleet.register(app)
    app.add_typer(rollout.app, name="rollout")
    app.add_typer(experiment.app, name="experiment")
    app.add_typer(webhook.app, name="webhook")
    app.add_typer(mqtt.app, name="mqtt")
    optimize.register(app)
    estimate.register(app)
    app.add_typer(profiles.app, name="profiles")


_register()


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this in-process)."""
    try:
        app(args=argv, prog_name="edgeship", standalone_mode=False)
    except EdgeshipError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {exc.hint}", soft_wrap=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        err_console.print("[red]aborted[/]")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        return 130
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
