"""The demo's story on a live fleet: v1 installed, v2 as deltas, bad v3 stopped, feedback, a forgery.

``run_story`` starts every part (``demo.fleet``), runs the four acts against them through
the operator client, and returns a ``StorySummary`` whose fields are measured, never
assumed: versions from the server's device list, bytes from the devices' `download`
events, request failures counted by the clients that sent them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import httpx

from edgeship.client import OperatorClient
from edgeship.client.publish import push_repository
from edgeship.demo.fleet import Device, MqttBroker, agent_command, in_process_logs, start_runtime
from edgeship.demo.learning import LEARN_TAG, LEARNERS, learn_act, write_device_text
from edgeship.demo.realmodel import CHAT_PROMPT, COMPLETION_PROMPT, requires, write_v2
from edgeship.demo.walkthrough import fine_tune
from edgeship.errors import EdgeshipError, ServerError, TrustError, UsageError
from edgeship.loopback import CLI, Processes, free_port, server_ready, wait_for
from edgeship.optimize.profiles import Profile, load_profiles, pick_profiles
from edgeship.release.bundle import ComponentSpec, build_release
from edgeship.release.manifest import ComponentKind, HealthSuite, Requirements
from edgeship.samples.imagemodel import write_tiny_denoiser
from edgeship.samples.llama import TinyLlama, write_tiny_llama
from edgeship.server.bootstrap import init_data_dir
from edgeship.server.settings import ServerSettings
from edgeship.server.tls import TlsFiles, init_certs
from edgeship.trust.client import ReleaseVerifier
from edgeship.workspace import Workspace

NAME = "assistant"
V1, V2, V3 = "1.0.0", "1.1.0", "1.2.0"
V4 = "1.3.0"  # `--learn`: the federated candidate
PROFILES = ("pi5-8gb", "jetson-nano-4gb")
BAD_HARDWARE = "jetson-nano-4gb"  # v3's health suite fails there
HW_ENV = "EDGESHIP_DEMO_HW"
# The release dir holds each component under its source file name.
GOOD_HEALTH = HealthSuite(command="for f in *.gguf *.onnx; do test -s \"$f\" || exit 1; done", timeout_s=30)
# Component names: the runtime serves each under its own. `optimize --push` names the
# variant it ships "model"; the image model travels beside it (`--with`).
LLM, IMAGE = "model", "denoiser.onnx"
CTX = 128  # the runtimes' context (demo.fleet.start_runtime): memory is estimated for it
Narrate = Callable[[str, str], None]
Progress = Callable[[str, int, int], None]  # (task, done, total)


@dataclass
class StorySummary:
    out: str
    devices: int
    versions: dict[str, str | None] = field(default_factory=dict)  # device name → version at the end
    optimize: list[dict[str, Any]] = field(default_factory=list)  # the choice per profile
    requirements: dict[str, Any] = field(default_factory=dict)  # what v1 required of its devices
    presented: dict[str, int] = field(default_factory=dict)  # profile → devices whose agents present its facts
    model: str = ""  # the user's GGUF (`--model`); empty: the generated tiny one
    answers: list[dict[str, Any]] = field(default_factory=list)  # {device, release, request, prompt, answer, image_outputs}
    mqtt_messages: int = 0
    delta: dict[str, int] = field(default_factory=dict)  # full_size / bytes_downloaded over v2's downloads
    swap_requests: dict[str, int] = field(default_factory=dict)  # ok / failed while v2 hot-swapped
    notices: int = 0  # v2 assignments that told the device when it would switch (window + notice)
    runtime_releases: dict[str, list[str]] = field(default_factory=dict)  # device → releases its runtime serves at the end
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # version → final rollout record
    feedback: dict[str, Any] = field(default_factory=dict)
    forged_refused: bool = False
    forged_error: str = ""
    timeline: list[dict[str, Any]] = field(default_factory=list)  # {t, act, text}
    health: dict[str, dict[str, int]] = field(default_factory=dict)  # version → {committed, rolled_back, failed}
    learning: dict[str, Any] = field(default_factory=dict)  # `--learn`: the round's accepted/dropped, loss before/after
    seconds: float = 0.0
    ok: bool = False

    @property
    def final_version(self) -> str:
        return V4 if self.learning else V2

    def check(self) -> list[str]:
        """What did not end as the story says; empty when it did."""
        problems = []
        final = self.final_version
        before, after = self.learning.get("loss_before"), self.learning.get("loss_after")
        if self.learning and not (self.learning.get("used") and before is not None and after is not None and after < before):
            problems.append(f"the federated round was not used or did not lower the loss: {self.learning}")
        if set(self.versions.values()) != {final} or len(self.versions) != self.devices:
            problems.append(f"not every device ends on {final}: {self.versions}")
        v3 = self.rollouts.get(V3, {})
        if v3.get("status") not in ("paused", "aborted") or not v3.get("rollback"):
            problems.append(f"v3's rollout was not stopped with a rollback: {v3.get('status')} {v3.get('reason')}")
        if not self.forged_refused:
            problems.append("the forged release was not refused")
        if not 0 < self.delta.get("bytes_downloaded", 0) < self.delta.get("full_size", 0):
            problems.append(f"v2 did not travel as deltas smaller than the files: {self.delta}")
        if self.swap_requests.get("failed", 1) or not self.swap_requests.get("ok"):
            problems.append(f"requests failed during the hot swaps: {self.swap_requests}")
        if not self.mqtt_messages:
            problems.append("no inference result arrived over MQTT")
        if self.notices != self.devices:
            problems.append(f"{self.notices} of {self.devices} devices were told when v2 would switch")
        if {tuple(r) for r in self.runtime_releases.values()} != {(f"{NAME}@{final}",)}:
            problems.append(f"the runtimes do not all serve {final}: {self.runtime_releases}")
        if not self.feedback:
            problems.append("the device user's feedback did not reach the server")
        if not self.requirements.get("arch") or self.rollouts.get(V1, {}).get("skipped", 1):
            problems.append(f"v1 did not require the profiles' hardware of every device: {self.requirements}, "
                            f"skipped {self.rollouts.get(V1, {}).get('skipped')}")
        return problems

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLoad:
    """LLM requests (chats; completions on a user's model) sent back to back to each runtime
    while a rollout swaps its model."""

    def __init__(self, urls: list[str], request: str = "chat") -> None:
        self.request = request
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(u,), daemon=True) for u in urls]

    def _run(self, url: str) -> None:
        with httpx.Client(timeout=60) as http:
            while not self._stop.is_set():
                path, body = _request(url, self.request, "Hi", 2)
                r = http.post(path, json=body)
                if r.status_code == 200:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors.append(f"{r.status_code} {r.text[:200]}")
                time.sleep(0.05)

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)


@dataclass
class Story:
    """The parts of one demo run and the summary it fills in."""

    out: Path
    summary: StorySummary
    narrate: Narrate
    progress: Progress
    fast: bool
    procs: Processes = field(default_factory=Processes)
    devices: list[Device] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    broker: MqttBroker | None = None
    client: OperatorClient | None = None
    ws: Workspace | None = None
    ca: Path | None = None
    url: str = ""
    token: str = ""  # the operator's admin token
    models: dict[str, Path] = field(default_factory=dict)
    requirements: Requirements | None = None  # v1's, kept by the later versions
    user_model: Path | None = None  # `--model`: the user's GGUF is v1
    learn: bool = False  # `--learn`: the first LEARNERS devices train on their own text

    def say(self, act: str, text: str) -> None:
        self.summary.timeline.append({"t": round(time.monotonic() - self.started, 2), "act": act, "text": text})
        self.narrate(act, text)

    @property
    def api(self) -> OperatorClient:
        assert self.client is not None, "the server starts before any act"
        return self.client

    @property
    def workspace(self) -> Workspace:
        assert self.ws is not None, "the workspace is made before any act"
        return self.ws

    # -- setup -----------------------------------------------------------------------

    def start(self, devices: int) -> None:
        self.ws = Workspace.init(self.out / "workspace", passphrase=None)
        data = self.out / "server"
        tls = init_certs(data, ["127.0.0.1", "localhost"])
        settings = ServerSettings(data_dir=data, port=free_port(), poll_interval_s=1, rollout_check_s=0.5,
                                  access_log=False, log_level="warning", tls_cert=tls.cert, tls_key=tls.key)
        self.token = token = init_data_dir(settings, self.ws).token
        self.ca = TlsFiles.under(data).ca
        self.url = f"https://127.0.0.1:{settings.port}"
        self.procs.spawn([*CLI, "server"], self.out / "server.log", settings.to_env())
        wait_for("the update server", lambda: server_ready(self.url, self.ca), 60, self.out)
        self.client = OperatorClient(self.url, token, ca=str(self.ca))
        self.say("setup", f"update server on {self.url} (SQLite, local blobs, TLS from its own CA)")
        self.broker = MqttBroker().start()
        self.say("setup", f"MQTT broker (amqtt, pure Python) on {self.broker.url}")
        profiles = pick_profiles(load_profiles(), list(PROFILES))
        for i in range(devices):
            hw = profiles[i % len(profiles)]
            text = write_device_text(self.out / "devices" / f"dev-{i:02d}-text", i) if self.learn and i < LEARNERS else None
            self.devices.append(Device(f"dev-{i:02d}", self.out / "devices" / f"dev-{i:02d}", hw.name, pilot=i < 2,
                                       facts=presented_facts(hw), learn_data=text))
            self.summary.presented[hw.name] = self.summary.presented.get(hw.name, 0) + 1
        # A runtime on each pilot device: one per hardware profile.
        for d in self.devices[:2]:
            d.runtime = start_runtime(d.data, d.name, self.broker.url)

    def enroll(self) -> None:
        root = self.workspace.repo_dir / "metadata" / "1.root.json"
        assert self.ca is not None
        for d in self.devices:
            tags = {"hw": d.hardware, **({"ring": "pilot"} if d.pilot else {}), **(LEARN_TAG if d.learn_data else {})}
            token = self.api.create_enroll_token(tags, 1, None)["token"]
            self.procs.spawn(agent_command(d, self.url, root, self.ca, token), d.data.with_suffix(".log"), {HW_ENV: d.hardware})
        wait_for("every agent to enroll", lambda: self._count(lambda: len(list(self.api.devices()))), 90, self.out / "devices")
        shown = "; ".join(f"{n} as {hw} ({', '.join(_fact(k, v) for k, v in self._facts_of(hw).items())})"
                          for hw, n in self.summary.presented.items())
        self.say("enroll", f"{len(self.devices)} agents enrolled over TLS, presenting {shown}; "
                           f"runtimes on {', '.join(d.name for d in self.devices if d.runtime)}")

    def _facts_of(self, hardware: str) -> dict[str, str | int]:
        return next(d.facts for d in self.devices if d.hardware == hardware)

    def _count(self, n: Callable[[], int]) -> bool:
        done = n()
        self.progress("enroll", done, len(self.devices))
        return done == len(self.devices)

    def stop(self) -> None:
        """Stop everything started, in reverse; each part is stopped even if another fails."""
        try:
            self.procs.close()
        finally:
            for d in self.devices:
                if d.runtime is not None:
                    d.runtime.stop()
            if self.client is not None:
                self.client.close()
            if self.broker is not None:
                self.broker.stop()

    # -- the acts ---------------------------------------------------------------------

    def publish(self, version: str, llm: Path, health: HealthSuite) -> None:
        manifest = build_release(NAME, version, [ComponentSpec(ComponentKind.GGUF, llm, LLM),
                                                 ComponentSpec(ComponentKind.ONNX, self.models["denoiser"], IMAGE)],
                                 self.workspace.store, requirements=self.requirements, health=health, notes="edgeship demo")
        # Deltas from the previous release, as `release push` signs them.
        self.workspace.publish(manifest, delta_history=1)
        report = push_repository(self.api, self.workspace.repository())
        self.say("push", f"{NAME}@{version} signed and pushed ({len(report.uploaded)} files uploaded, {report.skipped} already there)")

    def act1(self, spec: TinyLlama) -> None:
        models = self.out / "models"
        models.mkdir(parents=True)
        self.models["denoiser"] = write_tiny_denoiser(models / IMAGE)
        health = models / "health.json"
        health.write_text(GOOD_HEALTH.model_dump_json())
        if self.user_model is not None:
            self.push_user_model(health)
        else:
            self.optimize_tiny_model(spec, health)
        manifest = self.workspace.load_manifest(self.workspace.find_release(NAME, V1))
        self.requirements = manifest.requirements
        self.summary.requirements = manifest.requirements.model_dump(mode="json")
        self.say("push", f"{manifest.ref} ({' + '.join(c.name for c in manifest.components)}) signed and uploaded; "
                         f"it requires arch {'|'.join(manifest.requirements.arch)} and "
                         f"{(manifest.requirements.min_ram or 0) / (1 << 20):.0f} MiB of RAM")
        self.rollout(V1, pilot="", stages="100", bake="0")
        self.ask_runtimes(V1, self.load_request)
        wait_for("the results on MQTT", lambda: len(self._broker.messages) >= 2, 30)
        self.summary.mqtt_messages = len(self._broker.messages)
        self.say("infer", f"LLM and image model answered on {len(self.runtimes())} runtimes; "
                          f"{self.summary.mqtt_messages} results arrived over MQTT")

    def push_user_model(self, health: Path) -> None:
        """v1 is the user's GGUF as it is, pushed with the operator's `edgeship release push`."""
        assert self.user_model is not None and self.ca is not None
        model = self.out / "models" / "assistant-v1.gguf"
        model.symlink_to(self.user_model.resolve())
        self.models["v1"] = model
        profiles = pick_profiles(load_profiles(), list(PROFILES))
        self.cli("release", ["push", NAME, "--version", V1, "-c", f"{LLM}:model/gguf={model}",
                             "-c", f"{IMAGE}:model/onnx={self.models['denoiser']}", "--requires", requires(model, profiles, CTX),
                             "--health", str(health), "--notes", f"{self.user_model.name} (edgeship demo --model)",
                             "--server", self.url, "--ca", str(self.ca), "--workspace", str(self.workspace.root)], timeout=300)
        self.say("push", f"`edgeship release push` signed your {self.user_model.name} as {NAME}@{V1}, "
                         "with the image model (its PNG-in, PNG-out I/O recognised)")

    def optimize_tiny_model(self, spec: TinyLlama, health: Path) -> None:
        models = self.out / "models"
        self.models["source"] = write_tiny_llama(models / "assistant-v1.gguf", spec)
        optimized = models / "optimized"
        # The operator's own command: a variant per profile, the image model bundled beside it,
        # signed and uploaded. '{name}' keeps one release line, so v2 travels as a delta from v1.
        self.cli("optimize", [str(self.models["source"]), "--profiles", ",".join(PROFILES), "--types", "Q8_0", "--ctx", str(CTX),
                              "--threads", "2", "--out", str(optimized), "--push", NAME, "--version", V1,
                              "--release-name", "{name}", "--with", f"{IMAGE}:model/onnx={self.models['denoiser']}",
                              "--health", str(health), "--server", self.url, "--ca", str(self.ca),
                              "--workspace", str(self.workspace.root)], timeout=300)
        report = json.loads((optimized / "report.json").read_text())
        self.summary.optimize = [{"profile": c["profile"], "variant": c["variant"], "reason": c["reason"]} for c in report["choices"]]
        self.say("optimize", "; ".join(f"{c['profile']}: {c['variant']} ({c['reason']})" for c in report["choices"]))
        self.models["v1"] = next(optimized / v["path"] for v in report["variants"] if v["name"] == report["releases"][0]["variant"])

    @property
    def _broker(self) -> MqttBroker:
        assert self.broker is not None
        return self.broker

    def runtimes(self) -> list[Device]:
        return [d for d in self.devices if d.runtime is not None]

    @property
    def load_request(self) -> str:
        """What v1 is asked, and the load during the swap sends: a user's model may have no chat
        template before v2, and completions work on both."""
        return "chat" if self.user_model is None else "completion"

    def ask_runtimes(self, version: str, request: str) -> None:
        """Ask every runtime's LLM (a chat or a completion) and image model; record the answers."""
        if self.user_model is None:
            prompt, tokens = "Hello", 8
        else:
            prompt, tokens = CHAT_PROMPT if request == "chat" else COMPLETION_PROMPT, 12
        for d in self.runtimes():
            assert d.runtime is not None
            url = d.runtime.url
            path, body = _request(url, request, prompt, tokens)
            llm = httpx.post(path, json=body, timeout=120)
            image = httpx.post(f"{url}/v1/predict", timeout=120, json={"model": IMAGE, "inputs": {"image": [[[[0.5] * 32] * 32] * 3]}})
            for r in (llm, image):
                if r.status_code != 200:
                    raise ServerError(f"the runtime at {url} answered {r.status_code}: {r.text[:300]}", hint="see its log lines above")
            choice = llm.json()["choices"][0]
            self.summary.answers.append({"device": d.name, "release": f"{NAME}@{version}", "request": request, "prompt": prompt,
                                         "answer": choice["message"]["content"] if request == "chat" else choice["text"],
                                         "image_outputs": sorted(image.json().get("outputs", {}))})

    def act2(self, spec: TinyLlama) -> None:
        v2 = self.out / "models" / "assistant-v2.gguf"
        if self.user_model is not None:
            self.say("v2", f"v2 {write_v2(self.models['v1'], v2)}: the tensors stay as they are")
            self.models["v2"] = v2
        else:
            self.models["v2"] = write_tiny_llama(v2, spec, weights=fine_tune(spec))
        self.publish(V2, self.models["v2"], GOOD_HEALTH)
        now = datetime.now(UTC)
        window = f"{now - timedelta(minutes=1):%H:%M}-{now + timedelta(minutes=30):%H:%M}"
        with RequestLoad([d.runtime.url for d in self.runtimes() if d.runtime], self.load_request) as load:
            self.rollout(V2, pilot="ring=pilot", stages="50,100", bake="1s" if self.fast else "3s", window=window, notice="2s")
            # A few more requests on the new model before the count closes.
            time.sleep(1)
        self.summary.swap_requests = {"ok": load.ok, "failed": load.failed}
        if self.user_model is not None:
            self.ask_runtimes(V2, "chat")  # through the template v2 brought
        if load.errors:
            self.say("swap", f"failed requests: {load.errors[:3]}")
        full = saved = 0
        for e in self.events("download", f"{NAME}@{V2}"):
            full += int(e["data"]["full_size"])
            saved += int(e["data"]["bytes_downloaded"])
        self.summary.delta = {"full_size": full, "bytes_downloaded": saved}
        self.summary.notices = sum(1 for e in self.events("state", f"{NAME}@{V2}") if e["state"] == "assigned" and e["data"].get("switch_at"))
        self.say("delta", f"v2 reached the fleet as deltas: {saved:,} bytes downloaded instead of {full:,} "
                          f"({100 * (1 - saved / max(full, 1)):.1f}% saved); window {window} UTC with 2 s notice; "
                          f"{load.ok} requests during hot swaps, {load.failed} failed")

    def act3(self) -> None:
        # Pushed right after v2, so its signed rollback_to is v2: the automatic rollback target.
        self.publish(V3, self.models["v2"], HealthSuite(command=f'test "${HW_ENV}" != {BAD_HARDWARE}', timeout_s=30))
        final = self.rollout(V3, pilot="ring=pilot", stages="100", bake="1s", on_fail="rollback")
        # Settled means every device ordered to take v3 is back or has checked in without it;
        # the device list's versions come from check-ins, which may trail the last report by a round.
        wait_for(f"the fleet back on {V2}", lambda: set(self.versions().values()) == {V2}, 30, self.out / "devices")
        states = [(e["device_id"], e["state"]) for e in self.events("state", f"{NAME}@{V3}")]
        failed = {d for d, state in states if state == "rolled_back"}
        ordered_back = {d for d, state in states if state == "committed"}
        self.say("rollback", f"v3 failed on {BAD_HARDWARE} in the pilot: rollout {final['status']} ({final['reason']}); "
                             f"{len(failed)} rolled back on their own, {len(ordered_back)} committed and ordered back; fleet back on {V2}")

    def act4(self) -> None:
        d = self.devices[-1]
        self.cli("feedback", ["--data-dir", str(d.data), "--rating", "2", "--comment", "answers got slower after the update"])
        wait_for("the feedback to reach the server", lambda: bool(self.events("feedback")), 60, self.out / "devices")
        e = self.events("feedback")[-1]
        self.summary.feedback = {"device": d.name, "release": e["release"], **e["data"]}
        self.say("feedback", f"{d.name} rated {e['release']} {e['data'].get('rating')}/5: {e['data'].get('comment')!r}")
        # An attacker signs a release with a key of their own and serves it to a device.
        forger = Workspace.init(self.out / "forger", passphrase=None)
        forger.publish(build_release(NAME, "9.0.0", [ComponentSpec(ComponentKind.GGUF, self.models["v2"], LLM)],
                                     forger.store), delta_history=0)
        # A copy of the device's own trusted metadata: its cached root alone decides, as on the device.
        trust = self.out / "forged-device-trust"
        shutil.copytree(d.data / "trust", trust)
        verifier = ReleaseVerifier(str(forger.repo_dir), trust)
        try:
            verifier.verify_release(NAME, "9.0.0", self.out / "forged-download")
        except TrustError as exc:
            self.summary.forged_refused = True
            self.summary.forged_error = exc.message
        self.say("forgery", f"{NAME}@9.0.0 signed with a wrong key, served to {d.name}: "
                            + (f"refused — {self.summary.forged_error}" if self.summary.forged_refused else "NOT REFUSED"))

    def act5(self) -> None:
        self.summary.learning = learn_act(self, f"{NAME}@{V2}", V4, GOOD_HEALTH)

    # -- operator helpers -------------------------------------------------------------

    def cli(self, command: str, args: list[str], timeout: float = 60) -> None:
        """Run an `edgeship` command as its user would; its output goes to ``<command>.log``."""
        log = self.out / f"{command}.log"
        # The admin token through the environment, not the command line other users can read.
        proc = self.procs.spawn([*CLI, command, *args], log, {"EDGESHIP_ADMIN_TOKEN": self.token})
        if proc.wait(timeout) != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise ServerError(f"`edgeship {command}` exited {proc.returncode}: {' / '.join(tail)}", hint=f"see {log}")

    def rollout(self, version: str, **plan: Any) -> dict[str, Any]:
        rollout = self.api.start_rollout(release=f"{NAME}@{version}", **plan)
        self.say("rollout", f"{NAME}@{version}: pilot {plan.get('pilot') or 'none'}, stages {plan['stages']}"
                            + (f", window {plan['window']}" if plan.get("window") else ""))

        def settled() -> bool:
            nonlocal rollout
            rollout = self.api.rollout(rollout["id"])
            done = sum(s["done"] for s in rollout["stages"])
            self.progress(f"{version} rollout", done, len(self.devices))
            in_flight = sum(s["in_progress"] for s in rollout["stages"])
            if rollout["status"] == "aborted":
                return rollout["rollback_remaining"] == 0 and not in_flight
            return rollout["status"] in ("completed", "paused") and not in_flight

        wait_for(f"the {version} rollout to settle", settled, 150, self.out / "devices")
        self.summary.rollouts[version] = {k: rollout[k] for k in ("status", "phase", "reason", "rollback", "stages", "skipped")}
        self.say("rollout", f"{NAME}@{version}: {rollout['status']}" + (f" — {rollout['reason']}" if rollout["reason"] else ""))
        return rollout

    def events(self, kind: str, release: str | None = None) -> list[dict[str, Any]]:
        out, after = [], 0
        while True:
            page = self.api.events(after=after, limit=500)
            out += [e for e in page["events"] if e["type"] == kind and (release is None or e["release"] == release)]
            if not page["events"]:
                return out
            after = page["next_after"]

    def versions(self) -> dict[str, str | None]:
        by_id = {d.device_id: d.name for d in self.devices}
        return {by_id.get(d["id"], d["id"]): (d["current"] or {}).get("version") for d in self.api.devices()}

    def finish(self) -> None:
        self.summary.versions = self.versions()
        for d in self.devices:
            if d.runtime is not None:
                models = httpx.get(f"{d.runtime.url}/v1/models", timeout=30).json()["data"]
                self.summary.runtime_releases[d.name] = sorted({m["release"] for m in models})
        for version in (V1, V2, V3, *((V4,) if self.learn else ())):
            counts = {"committed": 0, "rolled_back": 0, "failed": 0}
            for e in self.events("state", f"{NAME}@{version}"):
                if e["state"] in counts:
                    counts[e["state"]] += 1
            self.summary.health[version] = counts


def _request(url: str, request: str, prompt: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
    """(URL, body) of a chat or completion request to the runtime's LLM, deterministic."""
    if request == "chat":
        return f"{url}/v1/chat/completions", {"model": LLM, "messages": [{"role": "user", "content": prompt}],
                                                "max_tokens": max_tokens, "temperature": 0}
    return f"{url}/v1/completions", {"model": LLM, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}


def presented_facts(profile: Profile) -> dict[str, str | int]:
    """What an agent standing in for ``profile`` reports (`agent run --fact`), so requirements apply."""
    return {"arch": profile.arch, "ram": profile.ram, "accelerator": profile.accelerator or "none"}


def _fact(key: str, value: str | int) -> str:
    return f"{key}={value / (1 << 30):g}GiB" if key == "ram" and isinstance(value, int) else f"{key}={value}"


def run_story(devices: int = 12, out: Path | None = None, *, fast: bool = False, model: Path | None = None, learn: bool = False,
              narrate: Narrate = lambda _a, _t: None, progress: Progress = lambda _t, _d, _n: None,
              keep_running: Callable[[], None] | None = None) -> StorySummary:
    """Run the whole story (on the user's GGUF ``model`` if given); every process it started is
    stopped before it returns or raises."""
    if devices < 4:
        raise UsageError("the story needs at least 4 devices", hint="two pilots (one per hardware profile) and a fleet to roll out to")
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix="edgeship-demo-"))
    if root.exists() and any(root.iterdir()):
        raise UsageError(f"{root} is not empty", hint="give --out a new or empty directory; the demo never deletes files")
    root.mkdir(parents=True, exist_ok=True)
    spec = TinyLlama(n_embd=64, n_layer=2, n_ff=128) if fast else TinyLlama(n_embd=128, n_layer=4, n_ff=256)
    story = Story(root, StorySummary(out=str(root), devices=devices, model=model.name if model else ""), narrate, progress, fast,
                  user_model=model, learn=learn)
    # The runtimes and the broker run in this process; their logs go beside the others.
    with in_process_logs(root / "runtimes.log"):
        act = "start"
        try:
            story.start(devices)
            for act, step in (("enroll", story.enroll), ("v1", lambda: story.act1(spec)), ("v2", lambda: story.act2(spec)),
                              ("v3", story.act3), ("feedback and forgery", story.act4),
                              *((("learn", story.act5),) if learn else ()), ("summary", story.finish)):
                step()
            story.summary.seconds = round(time.monotonic() - story.started, 1)  # the story's time, not the hold's
            if keep_running is not None:
                keep_running()
        except EdgeshipError:
            raise
        except Exception as exc:  # a bug or a dead process: say where the story broke, then clean up below
            raise ServerError(f"the demo broke during {act}: {type(exc).__name__}: {exc}",
                              hint=f"the server, agent and runtime logs are in {root}") from exc
        finally:
            story.stop()
    story.summary.ok = not story.summary.check()
    return story.summary
