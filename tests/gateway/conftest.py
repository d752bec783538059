"""A gateway over a memory store seeded with real images, driven in-process through httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from registry.config import Config, GatewayConfig
from registry.imports import import_image as import_layout
from registry.store.memory import MemoryStore
from tests.conftest import CountingStore
from tests.images import Layout, sample_layout

DEMO = "docker.io/library/demo"
OTHER = "other/repo"
SIGNATURE_TYPE = "application/vnd.example.signature.v1"


@dataclass
class Seeded:
    layout: Layout
    store: CountingStore
    single: dict[str, Any]  # descriptors as index.json lists them
    multi: dict[str, Any]
    other: dict[str, Any]
    signature: dict[str, Any]

    def blob(self, descriptor: dict[str, Any]) -> bytes:
        digest: str = descriptor["digest"]
        return (self.layout.root / "blobs" / "sha256" /
                digest.split(":")[1]).read_bytes()

    def manifest(self, descriptor: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.blob(descriptor))
        return doc


@pytest.fixture
async def seeded(tmp_path: Path) -> Seeded:
    layout = sample_layout(tmp_path / "oci")
    other = layout.image([{"only/in/other": b"private\n"}])
    layout.tag(other, "other")
    refs = {r["annotations"]["org.opencontainers.image.ref.name"]: r for r in layout.refs}
    signature = layout.image([{"sig": b"signed\n"}], subject=refs["single"],
                             artifact_type=SIGNATURE_TYPE)
    layout.tag(signature, "signature")
    store = MemoryStore()
    source = f"oci:{layout.root}"
    await import_layout(store, f"{source}:single", DEMO, "single")
    await import_layout(store, f"{source}:multi", DEMO, "multi")
    await import_layout(store, f"{source}:signature", DEMO, "sig")
    await import_layout(store, f"{source}:other", OTHER, "x")
    return Seeded(layout, CountingStore(store), refs["single"], refs["multi"], other,
                  signature)


def make_client(seeded: Seeded, **gateway: Any) -> httpx.AsyncClient:
    config = Config(gateway=GatewayConfig(**gateway))
    app = create_app(config, [seeded.store])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


@pytest.fixture
async def client(seeded: Seeded) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(seeded) as http:
        yield http
