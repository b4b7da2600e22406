"""`edgeship mqtt config`: Mosquitto's password file, ACL file and a mosquitto.conf snippet for push,
or with ``--dynsec`` the dynamic-security plugin's first config, whose accounts the server then keeps."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import typer

from edgeship.broker import DeviceAccount, broker_files, listener_conf, mosquitto_hash
from edgeship.cli.common import JsonOpt
from edgeship.cli.output import console
from edgeship.cli.remote import emit, operator_command
from edgeship.client import OperatorClient
from edgeship.errors import UsageError
from edgeship.store.fsutil import write_atomic

app = typer.Typer(help="MQTT push: the broker's users and ACLs (docs/server.md, Push).", no_args_is_help=True)

SERVER_PASSWORD_FILE = "server-password"
DYNSEC_FILE = "dynamic-security.json"
# Where Debian and most distributions install the plugin (multiarch first).
PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                "/usr/local/lib/mosquitto_dynamic_security.so")


def plugin_path(given: Path | None) -> Path:
    if given is not None:
        if not given.is_file():
            raise UsageError(f"no dynamic-security plugin at {given}", hint="pass the path of mosquitto_dynamic_security.so")
        return given.resolve()
    import glob

    found = sorted(p for pattern in PLUGIN_GLOBS for p in glob.glob(pattern))
    if not found:
        raise UsageError("cannot find Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so)",
                         hint="install Mosquitto 2 (Debian: apt-get install mosquitto) or pass --dynsec-plugin PATH")
    return Path(found[0])


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
    dynsec: bool = typer.Option(False, "--dynsec", help="Write the dynamic-security plugin's config instead of password and ACL files; run the server with --mqtt-dynsec and it keeps the accounts itself."),
    dynsec_plugin: Path | None = typer.Option(None, "--dynsec-plugin", help="mosquitto_dynamic_security.so (default: found under /usr/lib)."),
    json_out: bool = JsonOpt,
) -> None:
    """Write the broker's files for every enrolled device: each may read only its own notify
    topic and its tags' topics and write only its runtime's results; the server's user may
    publish every notice. Run it again after enrolling devices, then reload Mosquitto (SIGHUP).
    With --dynsec, run it once before the broker's first start: the server then creates and
    deletes accounts live (running it again re-exports every account; restart the broker)."""
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together", hint="pass both for an mqtts listener, or neither")
    if tls_ca is not None and tls_cert is None:
        raise UsageError("--tls-ca needs --tls-cert", hint="pass --tls-cert and --tls-key for an mqtts listener, or drop --tls-ca")
    tls = tls_cert is not None
    port = port or (8883 if tls else 1883)
    # Mosquitto reads the files from its own working directory: relative paths would point elsewhere.
    tls_cert, tls_key, tls_ca = (p.resolve() if p is not None else None for p in (tls_cert, tls_key, tls_ca))
    plugin = plugin_path(dynsec_plugin) if dynsec else None
    accounts = [DeviceAccount(a["device_id"], a["password_hash"], a["tags"]) for a in client.mqtt_accounts()]
    out.mkdir(parents=True, exist_ok=True)
    password = _server_password(out, server_password)
    if plugin is not None:
        files_written = _write_dynsec(out, accounts, server_username, password, plugin,
                                      listener_conf(port, bind, tls_ca, tls_cert, tls_key))
    else:
        files_written = _write_files(out, accounts, server_username, password, port, bind, tls_ca, tls_cert, tls_key)
    result = {"devices": len(accounts), "out": str(out), "server_username": server_username, "files": files_written}

    def human(r: dict) -> None:
        console.print(f"[green]wrote[/] broker {'dynamic-security config' if dynsec else 'files'} for {r['devices']} device(s) "
                      f"and user {server_username} to {out}")
        if dynsec:
            console.print(f"  add 'include_dir {out.resolve()}' to the broker's config and start it; the broker must be able to "
                          f"write {out / DYNSEC_FILE}")
        else:
            console.print(f"  add 'include_dir {out.resolve()}' to the broker's config; reload it with SIGHUP after each run")
        console.print(f"  the server publishes with: --mqtt {'mqtts' if tls else 'mqtt'}://BROKER:{port} --mqtt-username {server_username} "
                      f"{'--mqtt-dynsec ' if dynsec else ''}and EDGESHIP_MQTT_PASSWORD from {out / SERVER_PASSWORD_FILE}")

    emit(result, json_out, human)


def _write_dynsec(out: Path, accounts: list[DeviceAccount], server_username: str, password: str, plugin: Path,
                  listener: list[str]) -> list[str]:
    from edgeship import dynsec as plugin_config

    config = plugin_config.initial_config(server_username, mosquitto_hash(password), accounts)
    # Hashes of every device's credential: readable by the broker's user alone (which also rewrites it).
    write_atomic(out / DYNSEC_FILE, json.dumps(config, indent=1).encode(), mode=0o600)
    write_atomic(out / "mosquitto.conf", plugin_config.broker_conf(plugin, (out / DYNSEC_FILE).resolve(), listener).encode())
    return [DYNSEC_FILE, "mosquitto.conf"]


def _write_files(out: Path, accounts: list[DeviceAccount], server_username: str, password: str, port: int, bind: str,
                 tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None) -> list[str]:
    files = broker_files(accounts, server_username, mosquitto_hash(password), out_dir=out.resolve(), port=port, bind=bind,
                         cafile=tls_ca, certfile=tls_cert, keyfile=tls_key)
    # Hashes only, but of every device's credential: readable by the broker's user alone.
    write_atomic(out / "passwords", files.passwords.encode(), mode=0o600)
    write_atomic(out / "acl", files.acl.encode(), mode=0o600)
    write_atomic(out / "mosquitto.conf", files.conf.encode())
    return ["passwords", "acl", "mosquitto.conf"]
