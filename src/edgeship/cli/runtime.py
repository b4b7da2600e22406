"""`edgeship runtime`: serve the device's current release (OpenAI-compatible API, /v1/predict, hot swap),
and explain where its models would run (`plan`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeship.errors import UsageError
from edgeship.optimize.profiles import load_profiles, pick_profiles
from edgeship.units import parse_size

app = typer.Typer(help="The on-device inference runtime.", no_args_is_help=True)

ProfileOpt = typer.Option(None, "--profile", help="Device profile (`edgeship profiles list`): its usable memory "
                          "becomes the memory budget, its accelerator and GPU memory feed the backend plan.")
AcceleratorOpt = typer.Option(None, "--accelerator", help="The device's accelerator (cuda, npu, ane, qnn, ...; "
                              "default: the profile's, else none): which GPU layers and execution providers to plan.")


def device_settings(profile: str | None, memory_budget: str | None, accelerator: str | None) -> dict[str, Any]:
    """RuntimeConfig fields from --profile, --memory-budget and --accelerator."""
    budget = parse_size(memory_budget) if memory_budget else None
    if profile is None:
        return {"memory_budget": budget, "accelerator": accelerator}
    if budget is not None:
        raise UsageError("give --memory-budget or --profile, not both")
    p = pick_profiles(load_profiles(), [profile])[0]
    return {"memory_budget": p.usable_bytes, "accelerator": accelerator or p.accelerator, "vram": p.vram,
            "unified_memory": p.unified_memory}


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
    profile: str | None = ProfileOpt,
    accelerator: str | None = AcceleratorOpt,
    max_body: str = typer.Option("16MiB", "--max-body", help="Largest request body accepted."),
    drain_timeout: float = typer.Option(120.0, "--drain-timeout", help="Seconds a swap waits for in-flight requests."),
) -> None:
    """Serve the current release until interrupted."""
    from edgeship.runtime import RuntimeConfig, serve as run_server

    run_server(RuntimeConfig(
        data_dir=data_dir, host=host, port=port, threads=threads, n_ctx=ctx, max_body_bytes=parse_size(max_body),
        drain_timeout_s=drain_timeout, mqtt_url=mqtt, mqtt_ca=mqtt_ca, device_id=device_id,
        **device_settings(profile, memory_budget, accelerator),
    ))


@app.command("plan")
def plan(
    data_dir: Path = typer.Option(..., "--data-dir", help="The agent's data dir."),
    release: str | None = typer.Option(None, "--release", help="Release ID (default: the one `current` points at)."),
    ctx: int = typer.Option(2048, "--ctx", help="LLM context length in tokens (sizes the GPU layers)."),
    memory_budget: str | None = typer.Option(None, "--memory-budget", help="Memory the models may use, e.g. 3GiB."),
    profile: str | None = ProfileOpt,
    accelerator: str | None = AcceleratorOpt,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Explain where each model of a release would run here, and why, without loading it."""
    from edgeship.cli.output import console, human_size, print_json
    from edgeship.runtime.config import RuntimeConfig
    from edgeship.runtime.explain import explain

    config = RuntimeConfig(data_dir=data_dir, n_ctx=ctx, **device_settings(profile, memory_budget, accelerator))
    report = explain(config, release)
    if json_out:
        print_json(report)
        return
    device = report["device"]
    console.print(f"release {report['release']} ({report['release_id'][:12]}), accelerator "
                  f"{device['accelerator'] or 'none'}; llama.cpp GPU offload: {'yes' if device['gpu_offload'] else 'no'}; "
                  f"onnxruntime providers: {', '.join(device['onnx_providers']) or 'none'}")
    for c in report["components"]:
        p = c["plan"]
        where = (f"{'all' if p['n_gpu_layers'] == -1 else p['n_gpu_layers']} GPU layers" if p["n_gpu_layers"] is not None
                 else " > ".join(p["providers"]))
        console.print(f"  {c['name']:<16} {c['kind']:<11} {human_size(c['memory']):>10}  {where}: {p['reason']}")
