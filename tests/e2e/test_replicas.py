"""Replicated buckets on moto's S3 server, with containerd as the client: a lagging replica
(links and manifests, not every blob) and a hung replica endpoint (accepts, never answers)
never fail a pull that the primary can serve."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MotoS3
from tests.e2e.harness import (
    Containerd,
    Server,
    regfront_binary,
    regfront_import,
    run,
    serving_regfront,
)
from tests.images import Layout, layout_digest

pytestmark = pytest.mark.e2e

SINGLE = "docker.io/library/demo:single"
MULTI = "docker.io/library/demo:multi"
STORE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def hung_endpoint() -> Iterator[str]:
    """An S3 endpoint that accepts every connection and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    listener.close()


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoS3, oci_layout: Layout,
               hung_endpoint: str) -> Iterator[Server]:
    """The gateway over [hung replica, lagging replica, primary]."""
    primary, replica = moto_s3.new_bucket(), moto_s3.new_bucket()
    for ref in ("single", "multi"):
        regfront_import(oci_layout.root, ref, f"docker.io/library/demo:{ref}",
                        moto_s3.url(primary, "mirror"))
    # The replica got every link and manifest, but replication has not brought the layers yet.
    listed = moto_s3.admin.list_objects_v2(Bucket=primary, Prefix="mirror/")["Contents"]
    for obj in listed:
        key = obj["Key"]
        if key.endswith("/data") and obj["Size"] > 1000:  # layer bytes (manifests are small)
            continue
        moto_s3.admin.copy_object(Bucket=replica, Key=key,
                                  CopySource={"Bucket": primary, "Key": key})
    work = tmp_path_factory.mktemp("replicas")
    config = work / "regfront.yaml"
    hung = f"s3://{replica}/mirror?endpoint={hung_endpoint}&region=us-east-1&max_attempts=1"
    config.write_text(f"""
storage:
  - url: "{hung}"
  - url: "{moto_s3.url(replica, 'mirror')}"
  - url: "{moto_s3.url(primary, 'mirror')}"
gateway:
  store_timeout: {STORE_TIMEOUT}s
  store_backoff: 60s
""")
    with serving_regfront(moto_s3.url(primary, "mirror"), work, config=config) as server:
        yield server


def test_pulls_succeed_past_a_hung_and_a_lagging_replica(
        containerd: Containerd, replicated: Server, oci_layout: Layout, tmp_path: Path) -> None:
    hosts = tmp_path / "certs.d"
    run([regfront_binary(), "containerd-config", "--gateway", replicated.url,
         "--registry", "docker.io=http://127.0.0.1:9", "--out", str(hosts)])
    timings = []
    for ref, platform in ((SINGLE, "linux/amd64"), (MULTI, "linux/arm64")):
        containerd.remove_all_images()
        started = time.monotonic()
        containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "--platform", platform, ref)
        timings.append(time.monotonic() - started)
        expected = layout_digest(oci_layout.root, ref.rpartition(":")[2])
        assert containerd.images()[ref] == expected
    # The first pull paid the hung endpoint's timeout once; the second did not pay it at all.
    print(f"\npull times past a hung replica: first {timings[0]:.2f} s (store_timeout "
          f"{STORE_TIMEOUT} s), second {timings[1]:.2f} s")
