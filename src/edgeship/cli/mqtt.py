"""`edgeship mqtt config`: Mosquitto's password file, ACL file and a mosquitto.conf snippet for push."""

from __future__ import annotations

import secrets
from pathlib import Path

import typer

from edgeship.broker import DeviceAccount, broker_files, mosquitto_hash
from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient
from edgeship.errors import UsageError
from edgeship.store.fsutil import write_atomic

app = typer.Typer(help="MQTT push: the broker's users and ACLs (docs/server.md, Push).", no_args_is_help=True)

SERVER_PASSWORD_FILE = "server-password"


def _server_password(out: Path, given: str | None) -> str:
    """The given password, else the one kept from an earlier run, else a new one; kept (0600) either way.

    A given one is kept too: a later run without it must not make a new one, which would lock
    the running server out of the broker at its next reload.
    """
    kept = out / SERVER_PASSWORD_FILE
    if given:
        password = given
    elif kept.exists():
        return kept.read_text().strip()
    else:
        password = secrets.token_urlsafe(32)
    if not kept.exists() or kept.read_text().strip() != password:
        write_atomic(kept, (password + "\n").encode(), mode=0o600)
    return password


@operator_command(app, "config")
def config(
    client: OperatorClient,
    out: Path = typer.Option(..., "--out", help="Directory for passwords, acl, mosquitto.conf (and server-password)."),
    port: int | None = typer.Option(None, "--port", help="The broker's listener port (default: 8883 with --tls-cert, else 1883)."),
    bind: str = typer.Option("0.0.0.0", "--bind", help="The address the listener binds."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="The broker's PEM certificate (e.g. <data-dir>/tls/server.pem from `edgeship certs init`)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Its private key."),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", help="The CA file (e.g. <data-dir>/tls/ca.pem)."),
    server_username: str = typer.Option("edgeship-server", "--server-username", help="The broker user the update server publishes as."),
    server_password: str | None = typer.Option(
        None, "--server-password", envvar="EDGESHIP_MQTT_PASSWORD", show_default=False,
        help="Its password (default: kept in OUT/server-password, made on the first run).",
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Write the broker's files for every enrolled device: each may read only its own notify
    topic and its tags' topics and write only its runtime's results; the server's user may
    publish every notice. Run it again after enrolling devices, then reload Mosquitto (SIGHUP)."""
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together", hint="pass both for an mqtts listener, or neither")
    if tls_ca is not None and tls_cert is None:
        raise UsageError("--tls-ca needs --tls-cert", hint="pass --tls-cert and --tls-key for an mqtts listener, or drop --tls-ca")
    tls = tls_cert is not None
    port = port or (8883 if tls else 1883)
    # Mosquitto reads the files from its own working directory: relative paths would point elsewhere.
    tls_cert, tls_key, tls_ca = (p.resolve() if p is not None else None for p in (tls_cert, tls_key, tls_ca))
    accounts = [DeviceAccount(a["device_id"], a["password_hash"], a["tags"]) for a in client.mqtt_accounts()]
    out.mkdir(parents=True, exist_ok=True)
    password = _server_password(out, server_password)
    files = broker_files(accounts, server_username, mosquitto_hash(password), out_dir=out.resolve(), port=port, bind=bind,
                         cafile=tls_ca, certfile=tls_cert, keyfile=tls_key)
    # Hashes only, but of every device's credential: readable by the broker's user alone.
    write_atomic(out / "passwords", files.passwords.encode(), mode=0o600)
    write_atomic(out / "acl", files.acl.encode(), mode=0o600)
    write_atomic(out / "mosquitto.conf", files.conf.encode())
    result = {"devices": len(accounts), "out": str(out), "server_username": server_username,
              "files": ["passwords", "acl", "mosquitto.conf"]}

    def human(r: dict) -> None:
        console.print(f"[green]wrote[/] broker files for {r['devices']} device(s) and user {server_username} to {out}")
        console.print(f"  add 'include_dir {out.resolve()}' to the broker's config; reload it with SIGHUP after each run")
        console.print(f"  the server publishes with: --mqtt {'mqtts' if tls else 'mqtt'}://BROKER:{port} --mqtt-username {server_username} "
                      f"and EDGESHIP_MQTT_PASSWORD from {out / SERVER_PASSWORD_FILE}")

    emit(result, json_out, human)
