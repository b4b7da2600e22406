"""`edgeship release push|list|show`: build, sign and inspect releases."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from edgeship.cli.common import JsonOpt, WorkspaceOpt, open_workspace
from edgeship.cli.output import console, human_size, print_json
from edgeship.cli.remote import CaOpt, TokenOpt
from edgeship.cli.upload import NoUploadOpt, UploadServerOpt, upload_signed
from edgeship.errors import UsageError, ValidationError
from edgeship.release.bundle import ComponentSpec, build_release, parse_requirements, read_chat_template
from edgeship.release.deltas import DEFAULT_HISTORY, BuiltDelta
from edgeship.release.imageio import ImageIO
from edgeship.release.manifest import HealthSuite, parse_ref
from edgeship.store.digest import Digest

app = typer.Typer(help="Build, sign and inspect releases.", no_args_is_help=True)


def read_health(path: Path | None) -> HealthSuite | None:
    if path is None:
        return None
    try:
        return HealthSuite.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read health suite {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ValidationError(f"health suite {path} is not valid: {exc}") from exc


@app.command("push")
def push(
    name: str = typer.Argument(..., help="Release name, e.g. 'detector' or 'assistant-llm'."),
    version: str = typer.Option(..., "--version", "-v", help="Semantic version, higher than the last one of NAME."),
    component: list[str] = typer.Option(
        ...,
        "--component",
        "-c",
        help="[NAME:]KIND=PATH, repeatable. KIND: model/gguf, model/onnx, model/safetensors, adapter/lora, config, file.",
    ),
    requires: str | None = typer.Option(None, "--requires", help="Device requirements, e.g. ram=2GiB,arch=aarch64|x86_64,accelerator=cuda."),
    health: Path | None = typer.Option(None, "--health", help="JSON file with the health suite devices run after switching."),
    notes: str = typer.Option("", "--notes", help="Release notes shown to operators."),
    image_io: list[str] = typer.Option(
        [],
        "--image-io",
        help="[NAME:]key=value,... sets or overrides an ONNX component's image I/O (PNG/JPEG on /v1/predict), "
        "e.g. denoiser:mode=L,size=256x256,scale=1/255,mean=0.5,std=0.5; keys: input, output, layout, mode, size, "
        "scale, mean, std, restore_size. [NAME:]off: none. Image-to-image models are recognised without it.",
    ),
    chat_template: list[str] = typer.Option(
        [], "--chat-template", help="[COMPONENT=]FILE: a Jinja chat template for a GGUF component, signed with the "
        "release; devices use it instead of the one inside the GGUF. Repeatable."),
    adapter_base: str | None = typer.Option(
        None, "--adapter-base", help="The base model adapter/lora components were trained on: sha256:HEX or its GGUF "
        "file (default: the release's model/gguf). Devices without it installed refuse the release."),
    deltas: int = typer.Option(
        DEFAULT_HISTORY, "--deltas", min=0, help="Sign deltas from this many previous releases of NAME (0: none)."
    ),
    server: str | None = UploadServerOpt,
    no_upload: bool = NoUploadOpt,
    token: str | None = TokenOpt,
    ca: Path | None = CaOpt,
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Validate the components, store them by digest, write the manifest, sign it, and upload
    it to the workspace's server (or --server) unless --no-upload."""
    ws = open_workspace(workspace)
    specs = [ComponentSpec.parse(c) for c in component]
    images = [ImageIO.parse(i) for i in image_io]
    ws.check_publishable(name, version)
    # Whatever fails from here (a bad file, a full disk, Ctrl-C) leaves the workspace as it was.
    with ws.unchanged_on_failure(), console.status("validating and storing components…") as status:
        manifest = build_release(
            name,
            version,
            specs,
            ws.store,
            requirements=parse_requirements(requires),
            health=read_health(health),
            notes=notes,
            image_io=images,
            chat_templates=dict(read_chat_template(t, specs) for t in chat_template),
            adapter_base=adapter_base,
            on_component=lambda n, size: status.update(f"stored {n} ({human_size(size)})"),
        )
        built: list[BuiltDelta] = []

        def on_delta(d: BuiltDelta) -> None:
            built.append(d)
            status.update(f"delta {d.pair.new.name} from {d.pair.from_version}: {human_size(d.size)}")

        status.update("building deltas and signing…")
        release_id = ws.publish(manifest, delta_history=deltas, on_delta=on_delta)
    if not json_out:
        console.print(f"[green]pushed[/] {manifest.ref}  release {release_id[:16]}…")
        for c in manifest.components:
            console.print(f"  {c.name:<20} {c.kind.value:<18} {human_size(c.size):>10}  {c.digest[:19]}…")
            if "image" in c.meta:
                image = c.meta["image"]
                console.print(f"    image I/O: {image['input']} -> {image['output']}, {image['layout']} {image['mode']}")
        for d in built:
            verdict = f"saves {d.saving:.0%}" if d.kept else "not worth it, devices take the whole file"
            console.print(f"  delta {d.pair.new.name} from {d.pair.from_version}: {human_size(d.size)} ({verdict})")
    upload = upload_signed(ws, server, no_upload, token, ca, kept=f"{manifest.ref} is signed in the workspace")
    if json_out:
        print_json(
            {
                "name": manifest.name,
                "version": manifest.version,
                "release_id": release_id,
                "deltas": [_delta_row(d) for d in built],
                **upload.to_json(),
            }
        )
    else:
        upload.say()


def _delta_row(d: BuiltDelta) -> dict:
    return {
        "component": d.pair.new.name,
        "from_version": d.pair.from_version,
        "size": d.size,
        "full_size": d.pair.new.size,
        "kept": d.kept,
        "encoder": d.encoder,
    }


@app.command("list")
def list_releases(
    name: str | None = typer.Argument(None, help="Only this release name."),
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List signed releases, newest version last."""
    ws = open_workspace(workspace)
    records = ws.releases(name)
    rows = []
    for r in records:
        m = ws.load_manifest(r)
        rows.append(
            {
                "name": r.name,
                "version": r.version,
                "release_id": r.release_id,
                "components": len(m.components),
                "size": sum(c.size for c in m.components),
                "created": m.created,
            }
        )
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no releases yet; push one with `edgeship release push`")
        return
    table = Table("NAME", "VERSION", "RELEASE ID", "COMPONENTS", "SIZE", "CREATED", box=None)
    for row in rows:
        table.add_row(row["name"], row["version"], row["release_id"][:12], str(row["components"]), human_size(row["size"]), row["created"])
    console.print(table)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION (default: the latest version)."),
    check: bool = typer.Option(False, "--check", help="Also rehash every stored blob."),
    workspace: Path | None = WorkspaceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Show a release: components, sizes, digests, release ID and signature status."""
    ws = open_workspace(workspace)
    name, version = parse_ref(ref)
    record = ws.find_release(name, version)
    manifest = ws.load_manifest(record)
    repo = ws.repository()
    signatures = {role: repo.signature_status(role) for role in ("root", "targets", "snapshot", "timestamp")}
    blobs = {}
    for c in manifest.components:
        digest = Digest(c.hexdigest)
        blobs[c.name] = ("ok" if ws.store.verify(digest) else "CORRUPT") if check else ("present" if ws.store.has(digest) else "MISSING")
    data = {
        "name": manifest.name,
        "version": manifest.version,
        "release_id": record.release_id,
        "created": manifest.created,
        "notes": manifest.notes,
        "requirements": manifest.requirements.model_dump(mode="json"),
        "health": manifest.health.model_dump(mode="json"),
        "components": [{**c.model_dump(mode="json"), "stored": blobs[c.name]} for c in manifest.components],
        "signatures": signatures,
        "deltas": ws.deltas_to(manifest),
    }
    if json_out:
        print_json(data)
        return
    console.print(f"[bold]{manifest.ref}[/]  release {record.release_id}")
    console.print(f"created {manifest.created}" + (f" — {manifest.notes}" if manifest.notes else ""))
    reqs = {k: v for k, v in data["requirements"].items() if v}
    if reqs:
        console.print(f"requires {json.dumps(reqs)}")
    table = Table("COMPONENT", "KIND", "SIZE", "DIGEST", "STORED", box=None)
    for c in manifest.components:
        table.add_row(c.name, c.kind.value, human_size(c.size), c.digest, blobs[c.name])
    console.print(table)
    for d in data["deltas"]:
        console.print(
            f"  delta {d['component']} from {d['from_version']}: {human_size(d['length'])} "
            f"instead of {human_size(d['target_size'])} (saves {d['saving']:.0%})"
        )
    for role, status in signatures.items():
        colour = "green" if status.startswith("valid") else "red"
        console.print(f"  {role:<9} [{colour}]{status}[/]")
