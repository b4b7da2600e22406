"""Entry point: the root command table and the one place errors become messages and exit codes."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.markup import escape

from edgeship import __version__
from edgeship.cli.lazy import Lazy, LazyGroup
from edgeship.cli.output import err_console
from edgeship.errors import EdgeshipError

# Every command: name -> the module that defines it (imported only when the command runs) and
# the one-line help `edgeship --help` shows, which must equal the module's own (a test checks).
# A new command or group goes here; `--help` lists them in this order.
COMMANDS: dict[str, Lazy] = {
    "demo": Lazy("edgeship.cli.demo", "Ship a tiny LLM and image model to a simulated fleet: v1, v2 as deltas, a bad v3 stopped, a forgery refused."),
    "init": Lazy("edgeship.cli.init", "Create an operator workspace: edgeship.toml, Ed25519 keys for the four TUF roles, signed metadata."),
    "release": Lazy("edgeship.cli.release", "Build, sign and inspect releases."),
    "verify": Lazy("edgeship.cli.verify", "Verify a release as a device would: TUF metadata, signatures, expiry, versions, every hash."),
    "keys": Lazy("edgeship.cli.keys", "Manage the signing keys of the TUF roles."),
    "delta": Lazy("edgeship.cli.delta", "Delta patches between model files: only the tensors (or chunks) that changed."),
    "simulate": Lazy("edgeship.cli.simulate", "Run a rollout against virtual devices with faults, on the real engine, and chart it."),
    "agent": Lazy("edgeship.cli.agent", "Run the device agent and inspect its data dir."),
    "feedback": Lazy("edgeship.cli.feedback", "Rate the release this device runs; the agent sends it at its next check-in."),
    "runtime": Lazy("edgeship.cli.runtime", "The on-device inference runtime."),
    "server": Lazy("edgeship.cli.server", "Run the update server, or set up its data dir (`edgeship server init`)."),
    "device": Lazy("edgeship.cli.device", "Enroll devices and look after the fleet."),
    "admin": Lazy("edgeship.cli.admin", "Operator credentials for the update server."),
    "certs": Lazy("edgeship.cli.certs", "TLS certificates for the update server."),
    "assign": Lazy("edgeship.cli.fleet", "Assign a release to a tag or a device; devices pick it up at their next check-in."),
    "events": Lazy("edgeship.cli.fleet", "Print device events in the order the server stored them."),
    "rollout": Lazy("edgeship.cli.rollout", "Staged rollouts: pilot, stages, bake times, failure budgets, automatic pause or rollback."),
    "experiment": Lazy("edgeship.cli.experiment", "A/B experiments: which of two releases does better on the same fleet."),
    "webhook": Lazy("edgeship.cli.webhook", "Webhooks: rollout paused, aborted or completed, POSTed with an HMAC-SHA256 signature."),
    "mqtt": Lazy("edgeship.cli.mqtt", "MQTT push: the broker's users and ACLs (docs/server.md, Push)."),
    "federated": Lazy("edgeship.cli.federated", "Federated learning: devices train on their own data, the server averages their weight updates into a candidate."),
    "optimize": Lazy("edgeship.cli.optimize", "Quantize MODEL, measure every variant, and pick the best that fits each profile."),
    "estimate": Lazy("edgeship.cli.estimate", "Estimate weights + KV cache + compute buffers + overhead for MODEL at --ctx tokens."),
    "profiles": Lazy("edgeship.cli.profiles", "Device profiles: RAM, arch, accelerator, TOPS, usable memory."),
}


class Root(LazyGroup):
    table = COMMANDS


app = typer.Typer(
    name="edgeship",
    cls=Root,
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


def report(message: str, hint: str | None = None) -> None:
    """How every failure reaches the user: one red line, then a yellow one saying what to do."""
    # Escaped: a hint such as "pip install 'edgeship[s3]'" is text, not rich markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        err_console.print(f"[yellow]hint:[/] {escape(hint)}", soft_wrap=True)


# typer up to 0.2x raises click's exceptions; newer typer raises those of its own copy of click
# (and needs no click installed). BadParameter is public in both, and its module holds the rest.
_parse_errors = sys.modules[typer.BadParameter.__module__]
_NO_ARGS: type | tuple[()] = getattr(_parse_errors, "NoArgsIsHelpError", ())  # before click 8.2: an Exit


def _usage(exc: Any) -> int:
    """A bad flag, argument or command, said the same way on every typer version."""
    if isinstance(exc, _NO_ARGS):
        exc.show()  # the help, for `edgeship` or a group given nothing
        return int(exc.exit_code)
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    report(message[:1].lower() + message[1:], f"see `{ctx.command_path} --help`" if ctx is not None else None)
    return int(exc.exit_code)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this in-process)."""
    root = typer.main.get_command(app)
    try:
        # Not app(standalone_mode=False): that turns a command's typer.Exit(code) into a return value.
        with root.make_context("edgeship", list(sys.argv[1:] if argv is None else argv)) as ctx:
            root.invoke(ctx)
    except EdgeshipError as exc:
        report(exc.message, exc.hint)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except _parse_errors.ClickException as exc:
        return _usage(exc)
    except (typer.Abort, EOFError):
        err_console.print("[red]aborted[/]")
        return 130
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        return 130
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))
