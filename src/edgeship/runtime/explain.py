"""`edgeship runtime plan`: the backend plan of an installed release, from its headers, without loading it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeship.agent.store import DeviceStore
from edgeship.runtime.backend import BackendOptions
from edgeship.runtime.config import RuntimeConfig
from edgeship.runtime.device import device_facts
from edgeship.runtime.fallbacks import CpuFallbacks
from edgeship.runtime.release import installed_release, prepare_release


def explain(config: RuntimeConfig, release_id: str | None) -> dict[str, Any]:
    """What the runtime would do with ``release_id`` (None: `current`): device facts and each component's plan."""
    directory = installed_release(DeviceStore(Path(config.data_dir)), release_id)
    device = device_facts(config)
    prepared = prepare_release(directory, BackendOptions(n_ctx=config.n_ctx, device=device))
    # As the runtime would load it: with the models its trial moved to the CPU there.
    prepared = prepared.on_cpu(CpuFallbacks(Path(config.data_dir)).get(directory.name))
    return {"release_id": directory.name, "release": prepared.manifest.ref, "device": device.to_json(),
            "components": [{"name": p.component.name, "kind": p.component.kind.value, "memory": p.memory,
                            "plan": p.plan.to_json()} for p in prepared.components]}
