"""registry:2 (Debian's docker-registry) serves a bucket after ``regfront gc`` - on disk and on
moto's S3: the kept image pulls whole through it (skopeo, every platform), the collected tag is
gone from tags/list and answers 404, and so does a blob only it needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from registry import layout
from tests.conftest import MotoS3
from tests.e2e.harness import (
    Skopeo,
    clean_env,
    regfront_binary,
    regfront_import,
    run,
    serving_registry2,
)
from tests.images import Layout, layout_blob, layout_digest

pytestmark = pytest.mark.e2e

NAME = "team/app"


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "regfront.yaml"
    path.write_text(yaml.safe_dump({
        "storage": [{"url": url}],
        # Imported repositories: no rule covers them; keep the newest tag of each.
        "gc": {"grace": "0s", "settle": "0s", "retention": {"newest": 1, "pulled_within": None}}}))
    return path


def _only_in_single(oci: Layout) -> str:
    """A layer of ``single`` that ``multi``'s images do not share."""
    manifest = json.loads(layout_blob(oci.root, layout_digest(oci.root, "single")))
    layer: str = manifest["layers"][-1]["digest"]
    return layer


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_registry2_serves_the_bucket_after_gc(tmp_path: Path, oci_layout: Layout, skopeo: Skopeo,
                                              backend: str, request: pytest.FixtureRequest
                                              ) -> None:
    s3: dict[str, Any] | None = None
    root = tmp_path / "bucket"
    url = str(root)
    if backend == "s3":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        bucket = moto.new_bucket()
        url = moto.url(bucket, "shared")
        s3 = {"region": moto.region, "bucket": bucket, "regionendpoint": moto.endpoint,
              "accesskey": moto.access_key, "secretkey": moto.secret_key, "secure": False,
              "v4auth": True, "rootdirectory": "/shared"}
    regfront_import(oci_layout.root, "single", f"{NAME}:1", url)
    kept = regfront_import(oci_layout.root, "multi", f"{NAME}:2", url)
    if backend == "file":
        # Six hours on, the import's claims have lapsed (registry/claims.py): drop them now.
        shutil.rmtree(root / layout.CLAIMS_DIR)
    else:
        moto.admin.delete_objects(Bucket=bucket, Delete={"Objects": [
            {"Key": o["Key"]} for o in moto.admin.list_objects_v2(
                Bucket=bucket, Prefix=f"shared/{layout.CLAIMS_DIR}")["Contents"]]})
    config = _config(tmp_path, url)
    env = clean_env("REGFRONT_")
    dry = run([regfront_binary(), "gc", "--config", str(config), "--dry-run"], env=env).stdout
    assert f"would delete tag {NAME}:1" in dry
    assert f"{NAME}:" in dry
    assert "would be freed" in dry
    assert "1 tags" in run([regfront_binary(), "gc", "--config", str(config)], env=env).stdout

    with serving_registry2(root, tmp_path, s3=s3) as registry2:
        assert registry2.tags(NAME) == ["2"]
        with httpx.Client(timeout=10) as client:
            gone = client.get(f"{registry2.url}/v2/{NAME}/manifests/1")
            assert gone.status_code == 404
            blob = client.get(f"{registry2.url}/v2/{NAME}/blobs/{_only_in_single(oci_layout)}")
            assert blob.status_code == 404
        skopeo("copy", "--all", "--src-tls-verify=false", registry2.ref(f"{NAME}:2"),
               f"oci:{tmp_path / 'out'}:x")
    assert layout_digest(tmp_path / "out", "x") == kept
