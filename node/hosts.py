"""containerd host configuration (``certs.d/<registry>/hosts.toml``) that puts the gateway first.

containerd reads these files on every pull, so nodes switch to (or away from) regfront without a
restart. The gateway is tried first for pull and resolve; on a 404 or an error containerd falls
through to ``server``, the registry itself. See docs/containerd.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from registry.errors import ConfigError
from registry.names import DOCKER_HUB, canonical_registry
from registry.secrets import read_secret_file

DEFAULT_DIAL_TIMEOUT = "3s"
CATCH_ALL = "_default"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@dataclass(frozen=True, slots=True)
class MirroredRegistry:
    name: str  # as containerd names the directory: docker.io, ghcr.io, reg.corp:5000, _default
    upstream: str | None  # the fallback ``server``; None for _default (the image's own host)


def parse_registry(text: str) -> MirroredRegistry:
    """``docker.io`` or ``docker.io=https://mirror.example`` (an explicit fallback server)."""
    name, _, upstream = text.partition("=")
    name = name.strip().lower()
    if name == CATCH_ALL:
        return MirroredRegistry(name, upstream or None)
    try:
        canonical = canonical_registry(name)
    except Exception:
        raise ConfigError(f"--registry {text!r}: not a registry host name") from None
    if canonical == DOCKER_HUB:
        name = DOCKER_HUB
    return MirroredRegistry(name, upstream or _default_server(name))


def _default_server(name: str) -> str:
    return "https://registry-1.docker.io" if name == DOCKER_HUB else f"https://{name}"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def parse_headers(values: Iterable[str], files: Iterable[str]) -> dict[str, str]:
    """``--header NAME=VALUE`` and ``--header-file NAME=FILE`` -> the headers containerd sends.

    A file holds the value; for ``Authorization``, a bare token (no scheme) becomes
    ``Bearer <token>``, so one file serves both the gateway's ``auth.static`` and the nodes.
    """
    headers: dict[str, str] = {}
    for flag, items in (("--header", values), ("--header-file", files)):
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not _HEADER_NAME.match(name):
                raise ConfigError(f"{flag} {name!r}: expected NAME=" +
                                  ("FILE" if flag == "--header-file" else "VALUE"))
            if flag == "--header-file":
                value = read_secret_file(value, f"{flag} {name}").strip()
                if name.lower() == "authorization" and value and " " not in value:
                    value = f"Bearer {value}"
            if not value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise ConfigError(f"{flag} {name}: empty, or a control character in the value")
            headers[name] = value
    return headers


def hosts_toml(gateway: str, registry: MirroredRegistry, *, dial_timeout: str,
               skip_verify: bool = False, ca_file: str | None = None,
               client: tuple[str, str] | None = None,
               headers: dict[str, str] | None = None) -> str:
    lines = [
        "# Written by `regfront containerd-config`: the regfront gateway first, then the",
        "# registry itself when the gateway has no such image or cannot be reached.",
    ]
    if registry.upstream:
        lines.append(f"server = {_toml_string(registry.upstream)}")
    lines += [
        "",
        f"[host.{_toml_string(gateway.rstrip('/'))}]",
        '  capabilities = ["pull", "resolve"]',
        # Honoured from containerd 2.1; older versions ignore it and wait up to 30 s.
        f"  dial_timeout = {_toml_string(dial_timeout)}",
    ]
    if skip_verify:
        lines.append("  skip_verify = true")
    if ca_file:
        lines.append(f"  ca = {_toml_string(ca_file)}")
    if client:
        cert, key = client
        lines.append(f"  client = [[{_toml_string(cert)}, {_toml_string(key)}]]")
    if headers:
        # Sent with every request to the gateway (and only to it): e.g. auth.static's token.
        lines += ["", f"  [host.{_toml_string(gateway.rstrip('/'))}.header]"]
        lines += [f"    {_toml_string(k)} = [{_toml_string(v)}]" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def write_hosts_dir(out: Path, gateway: str, registries: list[MirroredRegistry], *,
                    dial_timeout: str = DEFAULT_DIAL_TIMEOUT, skip_verify: bool = False,
                    ca_file: str | None = None,
                    client: tuple[str, str] | None = None,
                    headers: dict[str, str] | None = None) -> list[Path]:
    if not gateway.startswith(("http://", "https://")):
        raise ConfigError(f"--gateway {gateway!r}: expected an http:// or https:// URL")
    written = []
    for registry in registries:
        path = out / registry.name / "hosts.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = hosts_toml(gateway, registry, dial_timeout=dial_timeout,
                          skip_verify=skip_verify, ca_file=ca_file, client=client,
                          headers=headers)
        if headers:  # a credential: readable by root (containerd) only
            path.touch(mode=0o600)
            path.chmod(0o600)
        path.write_text(text)
        written.append(path)
    return written
