"""`edgeship runtime`: serve the device's current release (OpenAI-compatible API, /v1/predict, hot swap)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeship.errors import UsageError
from edgeship.optimize.profiles import load_profiles, pick_profiles
from edgeship.units import parse_size

app = typer.Typer(help="The on-device inference runtime.", no_args_is_help=True)


@app.command()
def serve(
    data_dir: Path = typer.Option(..., "--data-dir", help="The agent's data dir: serves the release `current` points at."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: the device's network too; "
                             "the admin API stays loopback-only)."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    mqtt: str | None = typer.Option(None, "--mqtt", help="Publish results to mqtt://HOST:PORT or mqtts://HOST:PORT."),
    mqtt_ca: Path | None = typer.Option(None, "--mqtt-ca", help="CA file that signed the broker's certificate (mqtts)."),
    device_id: str | None = typer.Option(None, "--device-id", help="Device ID in MQTT topics (default: the agent's "
                                         "enrolled ID, else the host name)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads per model (default: the library's)."),
    ctx: int = typer.Option(2048, "--ctx", help="LLM context length in tokens."),
    memory_budget: str | None = typer.Option(None, "--memory-budget", help="Memory the models may use together, "
                                             "e.g. 3GiB; a swap that would exceed it unloads the old release first."),
    profile: str | None = typer.Option(None, "--profile", help="Device profile (`edgeship profiles list`): its usable "
                                       "memory becomes the memory budget."),
    max_body: str = typer.Option("16MiB", "--max-body", help="Largest request body accepted."),
    drain_timeout: float = typer.Option(120.0, "--drain-timeout", help="Seconds a swap waits for in-flight requests."),
) -> None:
    """Serve the current release until interrupted."""
    from edgeship.runtime import RuntimeConfig, serve as run_server

    budget = parse_size(memory_budget) if memory_budget else None
    if profile is not None:
        if budget is not None:
            raise UsageError("give --memory-budget or --profile, not both")
        budget = pick_profiles(load_profiles(), [profile])[0].usable_bytes()
    run_server(RuntimeConfig(
        data_dir=data_dir, host=host, port=port, threads=threads, n_ctx=ctx,
        memory_budget=budget, max_body_bytes=parse_size(max_body),
        drain_timeout_s=drain_timeout, mqtt_url=mqtt, mqtt_ca=mqtt_ca, device_id=device_id,
    ))
