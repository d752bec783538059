"""Fixtures for the client-auth tests: the auth files (keys, htpasswd) and a gateway that
requires them; ``assert_challenged`` checks a 401 the way every refusal must look."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.authkit import Files, auth_section, client_for, make_config, make_files
from tests.gateway.conftest import Seeded

DEMO_SINGLE = "/v2/library/demo/manifests/single?ns=docker.io"
CHALLENGE_DEMO = ('Bearer realm="http://gateway/token",service="regfront",'
                  'scope="repository:docker.io/library/demo:pull"')

@pytest.fixture
def files(tmp_path: Path) -> Files:
    return make_files(tmp_path / "auth")


@pytest.fixture
async def client(seeded: Seeded, files: Files) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(seeded, make_config(auth_section(files))) as http:
        yield http


def assert_challenged(response: httpx.Response, name: str | None, error: str | None = None
                      ) -> None:
    assert response.status_code == 401, response.text
    header = response.headers["www-authenticate"]
    expected = 'Bearer realm="http://gateway/token",service="regfront"'
    if name is not None:
        expected += f',scope="repository:{name}:pull"'
    if error is not None:
        expected += f',error="{error}"'
    assert header == expected
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


