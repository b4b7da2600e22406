"""`edgeship agent run|status|fsck`: the device agent's command line."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from edgeship.agent.api import parse_facts
from edgeship.agent.config import (
    DEFAULT_KEEP_FREE,
    DEFAULT_METADATA_TIMEOUT_S,
    DEFAULT_MIN_RATE,
    DEFAULT_POLL_S,
    DEFAULT_PUSH_POLL_S,
    DEFAULT_RATE_WINDOW_S,
    DEFAULT_RECONNECT_SPREAD_S,
    AgentConfig,
)
from edgeship.agent.loop import Agent, fsck_data_dir, read_status
from edgeship.agent.status_api import StatusServer
from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console, print_json
from edgeship.errors import AgentError, StoreError, UsageError
from edgeship.units import parse_rate, parse_size

app = typer.Typer(help="Run the device agent and inspect its data dir.", no_args_is_help=True)

DataDirOpt = typer.Option(..., "--data-dir", "-d", help="The agent's data directory (store, journal, identity).")


def _tags(values: list[str]) -> dict[str, str]:
    tags = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise UsageError(f"tag {v!r} not understood", hint="write KEY=VALUE, e.g. --tag site=berlin")
        tags[key] = value
    return tags


@app.command()
def run(
    data_dir: Path = DataDirOpt,
    server: str | None = typer.Option(None, "--server", envvar="EDGESHIP_AGENT_SERVER", help="Update server URL (remembered after enrollment)."),
    enroll_token: str | None = typer.Option(
        None, "--enroll-token", envvar="EDGESHIP_AGENT_ENROLL_TOKEN", help="One-time token from the operator, needed on first start."
    ),
    root: Path | None = typer.Option(None, "--root", envvar="EDGESHIP_AGENT_ROOT", help="The operator's root.json, trusted on first start only."),
    ca: Path | None = typer.Option(None, "--ca", help="CA certificate to pin for an HTTPS server."),
    tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE tag sent at enrollment (repeatable)."),
    fact: list[str] = typer.Option(
        [], "--fact", help="KEY=VALUE reported instead of the measured fact and checked against release requirements "
        "(repeatable; arch, ram, accelerator, os, hostname), e.g. --fact arch=aarch64 --fact ram=8GiB.",
    ),
    max_rate: str | None = typer.Option(None, "--max-rate", envvar="EDGESHIP_AGENT_MAX_RATE", help="Download bandwidth cap, e.g. 2MB/s."),
    min_rate: str = typer.Option(
        f"{DEFAULT_MIN_RATE}B/s", "--min-rate",
        help="A component download averaging less than this over a --rate-window is cut and resumed after a backoff (0: no floor).",
    ),
    rate_window: float = typer.Option(DEFAULT_RATE_WINDOW_S, "--rate-window", min=1, help="Seconds over which --min-rate is averaged."),
    metadata_timeout: float = typer.Option(
        DEFAULT_METADATA_TIMEOUT_S, "--metadata-timeout", min=1,
        help="Seconds each signed metadata file may take once its response began; then the check-in fails and is retried on the backoff.",
    ),
    keep_free: str = typer.Option(
        f"{DEFAULT_KEEP_FREE // 2**20}MiB", "--keep-free",
        help="Start a download only if the disk keeps this much free after it; else fail the job with a one-line error and retry later.",
    ),
    poll: float = typer.Option(DEFAULT_POLL_S, "--poll", help="Seconds between check-ins until the server sets its own."),
    timezone: str | None = typer.Option(None, "--timezone", help="IANA zone for maintenance windows (default: the system's)."),
    status_port: int | None = typer.Option(
        None, "--status-port", help="Serve GET /status (the status.json document) on this loopback port for local software."
    ),
    runtime: str | None = typer.Option(
        None, "--runtime", envvar="EDGESHIP_AGENT_RUNTIME",
        help="URL of this device's `edgeship runtime serve` (e.g. http://127.0.0.1:8080): swapped after each switch, runs the inference checks.",
    ),
    mqtt: str | None = typer.Option(
        None, "--mqtt", envvar="EDGESHIP_AGENT_MQTT",
        help="Broker for push notices, mqtts://HOST:PORT: check in soon after the server says so (within the notice's spread), else every --push-poll seconds.",
    ),
    mqtt_ca: Path | None = typer.Option(None, "--mqtt-ca", help="CA file that signed the broker's certificate (mqtts)."),
    push_poll: float = typer.Option(DEFAULT_PUSH_POLL_S, "--push-poll", help="Seconds between check-ins while push is connected."),
    push_reconnect_spread: float = typer.Option(
        DEFAULT_RECONNECT_SPREAD_S, "--push-reconnect-spread", min=0,
        help="After each (re)connection to the broker, check in once after a random delay of up to this many seconds "
        "(a broker restart reconnects the whole fleet at once).",
    ),
    learn_data: Path | None = typer.Option(
        None, "--learn-data", help="Directory of local training text (JSONL): take part in federated rounds; the text never leaves the device.",
    ),
    once: bool = typer.Option(False, "--once", help="Check in once, do the work that follows, and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every step."),
) -> None:
    """Enroll (first start), then check in, install assigned releases and report, until stopped.

    Safe to kill at any moment: on start the agent finishes or undoes the step it was in.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if root is not None and not root.is_file():
        raise UsageError(f"trusted root {root} does not exist", hint="pass the operator's repository/metadata/1.root.json")
    floor, cap = parse_rate(min_rate), parse_rate(max_rate) if max_rate else None
    if cap is not None and floor > cap:
        raise UsageError(f"--min-rate {min_rate} is above --max-rate {max_rate}: every download would be cut as too slow",
                         hint="lower --min-rate (or pass --min-rate 0)")
    config = AgentConfig(
        data_dir=data_dir,
        server_url=server,
        enroll_token=enroll_token,
        root_file=root,
        ca=ca,
        tags=_tags(tag),
        facts=parse_facts(fact),
        poll_interval_s=poll,
        max_rate=cap,
        min_rate=floor,
        rate_window_s=rate_window,
        metadata_timeout_s=metadata_timeout,
        keep_free=parse_size(keep_free),
        timezone=timezone,
        runtime_url=runtime,
        mqtt_url=mqtt,
        mqtt_ca=mqtt_ca,
        push_poll_interval_s=push_poll,
        push_reconnect_spread_s=push_reconnect_spread,
        learn_data=learn_data.resolve() if learn_data else None,
    )
    agent = Agent(config)
    api = StatusServer(config.paths.status, status_port) if status_port is not None else None
    if api is not None:
        api.start()
    try:
        entry = agent.run(once=once)
    finally:
        agent.close()
        if api is not None:
            api.close()
    if once:
        state = entry.step.value if entry else "idle"
        console.print(f"state: {state}" + (f" ({agent.last_error})" if agent.last_error else ""))
        if agent.last_error:
            raise AgentError(agent.last_error, hint="`edgeship agent status` shows more; the next run retries")


@app.command()
def status(data_dir: Path = DataDirOpt, json_out: bool = JsonOpt) -> None:
    """Current and previous release, state, pending job and notice, last error, queued events."""
    if not data_dir.is_dir():
        raise UsageError(f"{data_dir} is not an agent data dir", hint="pass the --data-dir the agent runs with")
    doc = read_status(data_dir)
    if json_out:
        print_json(doc)
        return

    def ref(r: dict | None) -> str:
        return f"{r['name']}@{r['version']} ({r['release_id'][:12]})" if r else "-"

    console.print(f"device:   {doc.get('device_id') or 'not enrolled'}")
    console.print(f"state:    {doc['state']}")
    console.print(f"current:  {ref(doc['current'])}")
    console.print(f"previous: {ref(doc['previous'])}")
    job = doc.get("job")
    if job:
        console.print(f"job:      {job['release']} at {job['step']} ({job['phase']}); switch at {job['switch_at'] or 'once ready'}")
    console.print(f"events:   {doc['queued_events']} queued")
    if doc.get("last_error"):
        console.print(f"[red]last error:[/] {doc['last_error']}", soft_wrap=True)


@app.command()
def fsck(
    data_dir: Path = DataDirOpt,
    repair: bool = typer.Option(False, "--repair", help="Delete corrupt blobs and broken releases; fall back to `previous` if `current` is broken."),
    json_out: bool = JsonOpt,
) -> None:
    """Rehash every blob, check every release, link and the journal. Exits 1 if problems remain.

    Run it with the agent stopped.
    """
    report = fsck_data_dir(data_dir, repair=repair)
    if json_out:
        print_json({"clean": report.clean, "problems": report.problems, "repaired": report.repaired,
                    "blobs": report.checked_blobs, "releases": report.checked_releases})
    else:
        for p in report.problems:
            console.print(f"[red]problem:[/] {p}", soft_wrap=True)
        for r in report.repaired:
            console.print(f"[green]repaired:[/] {r}", soft_wrap=True)
        console.print(f"checked {report.checked_blobs} blobs, {report.checked_releases} releases: "
                      + ("clean" if report.clean else f"{len(report.problems)} problems"))
    if not report.clean and not repair:
        raise StoreError(f"{len(report.problems)} problems in {data_dir}",
                         hint="stop the agent and run `edgeship agent fsck --repair`; the agent downloads what was removed")
