"""`edgeship feedback`: the device user's rating of the release it runs, sent as an event."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeship.agent.config import DataDir
from edgeship.agent.events import Event, EventQueue
from edgeship.agent.store import CURRENT, DeviceStore
from edgeship.cli.output import console
from edgeship.errors import UsageError


def feedback(
    data_dir: Path = typer.Option(..., "--data-dir", "-d", help="The agent's data directory."),
    rating: int = typer.Option(..., "--rating", min=1, max=5, help="1 (bad) to 5 (great)."),
    comment: str = typer.Option("", "--comment", help="Free text for the operator."),
) -> None:
    """Rate the release this device runs; the agent sends it at its next check-in."""
    store = DeviceStore(data_dir)
    current = store.describe(store.link(CURRENT))
    if current is None:
        raise UsageError(f"no release is installed in {data_dir}", hint="feedback is about the running release; wait for the first install")
    ref = f"{current['name']}@{current['version']}"
    event = Event(type="feedback", release=ref, data={"rating": rating, "comment": comment, "release_id": current["release_id"]})
    EventQueue(DataDir(data_dir).events).put(event)
    console.print(f"feedback on {ref} queued as event {event.id}")


def register(app: typer.Typer) -> None:
    app.command(name="feedback")(feedback)
