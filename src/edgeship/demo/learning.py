"""The demo's learning act: four devices fine-tune the LLM on their own text in one federated
round; the operator pulls the candidate, signs it as an ordinary release and rolls it out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeship.loopback import wait_for
from edgeship.release.manifest import HealthSuite

if TYPE_CHECKING:
    from edgeship.demo.story import Story

LEARNERS = 4  # devices that train: the first four, pilots included
LEARN_TAG = {"learn": "yes"}
# Each learner's own notes: the text stays on the device, only a weight delta leaves it.
_TOPICS = ("the greenhouse sensors", "the delivery van", "the shop's espresso machine", "the wind turbine")
_NOTES = ("Morning check of {t}: everything ran as expected and the log shows no warnings.",
          "At noon {t} needed a small adjustment; the operator wrote down what was changed and why.",
          "The evening report for {t} lists the readings of the day and the work planned for tomorrow.",
          "A technician visited {t}, replaced a worn part and tested it twice before leaving.",
          "Notes on {t}: keep the manual close, label every cable and record each repair.")


def write_device_text(directory: Path, learner: int) -> Path:
    """A directory of JSONL notes about one topic per learner (different text on every device)."""
    topic = _TOPICS[learner % len(_TOPICS)]
    directory.mkdir(parents=True, exist_ok=True)
    records = [note.format(t=topic) + f" Entry {day}." for day in range(1, 4) for note in _NOTES]
    (directory / "notes.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in records))
    return directory


def learn_act(story: Story, base: str, version: str, health: HealthSuite) -> dict[str, Any]:
    """One round on the learners against ``base``; the candidate becomes ``version``, rolled out in stages."""
    run = story.api.start_federated(release=base, target=",".join(f"{k}={v}" for k, v in LEARN_TAG.items()), rounds=1,
                                    min_participants=LEARNERS, local_steps=1, deadline_s=300.0)
    story.say("learn", f"federated run {run['id']}: {LEARNERS} devices fine-tune {base} on their own text, one round")

    def closed() -> bool:
        nonlocal run
        run = story.api.federated_run(run["id"])
        story.progress("federated round", len(run["rounds"]), 1)
        return run["status"] != "running"

    wait_for("the federated round to close", closed, 300, story.out / "devices")
    entry = run["rounds"][-1]
    learning = {k: entry.get(k) for k in ("accepted", "rejected", "dropped", "samples", "loss_before", "loss_after", "used", "reason")}
    story.say("learn", f"round closed: {entry['accepted']} accepted, {entry['rejected']} rejected, {entry['dropped']} dropped; "
                       f"mean loss {_loss(entry['loss_before'])} → {_loss(entry['loss_after'])}; {entry.get('reason', '')}")
    if not entry["used"]:
        return learning
    candidate = story.out / "models" / f"assistant-{version}.gguf"
    story.cli("federated", ["pull", run["id"], "-o", str(candidate), "--server", story.url, "--ca", str(story.ca)])
    story.models[version] = candidate
    story.publish(version, candidate, health)
    story.rollout(version, pilot="ring=pilot", stages="50,100", bake="1s")
    return learning


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
