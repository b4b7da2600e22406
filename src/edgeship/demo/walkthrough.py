"""The release walk-through: init → push v1 → fine-tune → push v2 as a delta → verify → tamper → refuse.

Runs on generated tiny models in a scratch workspace; each step reports through a
callback so the CLI can narrate it and tests can assert on the summary.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeship.delta import apply_patch, make_patch
from edgeship.errors import TrustError, UsageError
from edgeship.release.bundle import ComponentSpec, build_release, parse_requirements
from edgeship.release.manifest import ComponentKind, HealthSuite
from edgeship.samples.imagemodel import write_tiny_denoiser
from edgeship.samples.llama import TinyLlama, tensors, write_tiny_llama
from edgeship.store.digest import Digest
from edgeship.trust.client import ReleaseVerifier
from edgeship.workspace import Workspace

Narrate = Callable[[str, str], None]


@dataclass
class WalkthroughSummary:
    workspace: str
    releases: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    model_bytes: int = 0
    delta_bytes: int = 0
    delta_exact: bool = False
    tamper_refused: bool = False
    tamper_error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def fine_tune(spec: TinyLlama, layer: int = 1, seed: int = 7) -> dict[str, np.ndarray]:
    """New weights for one block's attention, as a small fine-tune would change them."""
    base = tensors(spec)
    rng = np.random.default_rng(seed)
    changed = {}
    for name in (f"blk.{layer}.attn_q.weight", f"blk.{layer}.attn_v.weight"):
        changed[name] = (base[name] + rng.standard_normal(base[name].shape).astype(np.float32) * 0.001).astype(np.float32)
    return changed


def run_walkthrough(out: Path | None = None, narrate: Narrate = lambda _t, _d: None) -> WalkthroughSummary:
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="edgeship-demo-"))
    if root.exists() and any(root.iterdir()):
        raise UsageError(f"{root} is not empty", hint="give --out a new or empty directory; the demo never deletes files")
    models = root / "models"
    models.mkdir(parents=True)
    ws = Workspace.init(root / "workspace", passphrase=None)
    summary = WalkthroughSummary(workspace=str(ws.root))
    narrate("init", f"operator workspace with Ed25519 keys for root, targets, snapshot, timestamp at {ws.root}")

    spec = TinyLlama(n_embd=128, n_layer=4, n_ff=256)
    v1_llm = write_tiny_llama(models / "assistant-v1.gguf", spec)
    denoiser = write_tiny_denoiser(models / "denoiser.onnx")
    health = HealthSuite(command="test -s assistant.gguf", timeout_s=10)
    for version, llm in (("1.0.0", v1_llm), ("1.1.0", write_tiny_llama(models / "assistant-v2.gguf", spec, weights=fine_tune(spec)))):
        manifest = build_release(
            "assistant",
            version,
            [ComponentSpec(ComponentKind.GGUF, llm, "assistant.gguf"), ComponentSpec(ComponentKind.ONNX, denoiser, "denoiser.onnx")],
            ws.store,
            requirements=parse_requirements("ram=512MiB"),
            health=health,
            notes="walk-through",
        )
        ws.publish(manifest)
        summary.releases.append(manifest.ref)
        narrate("push", f"{manifest.ref} signed and stored: release {manifest.release_id[:16]}…")

    v2_llm = models / "assistant-v2.gguf"
    patch = models / "assistant-1.0.0-to-1.1.0.delta"
    stats = make_patch(v1_llm, v2_llm, patch)
    rebuilt = models / "rebuilt.gguf"
    digest = apply_patch(v1_llm, patch, rebuilt)
    summary.model_bytes = v2_llm.stat().st_size
    summary.delta_bytes = patch.stat().st_size
    summary.delta_exact = digest == stats.target_digest and rebuilt.read_bytes() == v2_llm.read_bytes()
    narrate("delta", f"v1 → v2 model delta: {summary.delta_bytes:,} bytes instead of {summary.model_bytes:,} ({stats.encoder} encoder)")

    device = root / "device-trust"
    verifier = ReleaseVerifier(str(ws.repo_dir), device, ws.repository().root_bytes(1))
    for ref in summary.releases:
        name, version = ref.split("@")
        verifier.verify_release(name, version, root / "downloads" / version)
        summary.verified.append(ref)
        narrate("verify", f"{ref}: TUF metadata, signatures, expiry and every hash check out, as on a device")

    # An attacker (or a dying disk) flips one byte of the model in the repository.
    blob = ws.store.path(Digest(ws.load_manifest(ws.find_release("assistant", "1.1.0")).components[0].hexdigest))
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 3] ^= 0x01
    blob.write_bytes(bytes(data))
    try:
        ReleaseVerifier(str(ws.repo_dir), root / "device2-trust", ws.repository().root_bytes(1)).verify_release(
            "assistant", "1.1.0", root / "downloads" / "tampered"
        )
    except TrustError as exc:
        summary.tamper_refused = True
        summary.tamper_error = exc.message
    narrate("tamper", "one flipped byte in the repository: " + ("refused — " + summary.tamper_error if summary.tamper_refused else "NOT DETECTED"))
    return summary
