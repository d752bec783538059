"""Where this node's kubelet pulls read hosts files: containerd's version and config decide.

kubelet pulls through containerd's CRI ImageService, never through ``ctr``. How that pull finds
``<dir>/<registry>/hosts.toml`` depends on the version and on a few settings (containerd's
``internal/cri/config`` and ``plugins/cri/images``, v1.6 to v2.2):

- up to 2.0, and from 2.1 when the CRI falls back to its "local" pull, ``config_path`` is a
  ``:``-separated list of directories, searched in order;
- from 2.1 the CRI pulls through the transfer service unless ``use_local_image_pull`` is set or a
  setting the transfer service lacks forces the local pull (``discard_unpacked_layers``,
  snapshot annotations on, ``max_concurrent_downloads`` other than 3, the deprecated mirrors,
  configs or auths, ``image_pull_with_sync_fs``). The transfer service reads ``config_path`` as
  ONE directory: a list is one path whose name contains colons;
- from 2.2 an unset ``config_path`` (with no mirrors) means
  ``/etc/containerd/certs.d:/etc/docker/certs.d``; before, unset means no hosts files at all.

``plan()`` turns that into the directories to write, or the one setting the node needs.
"""

from __future__ import annotations

import glob
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from registry.errors import ConfigError

DEFAULT_CONFIG = "/etc/containerd/config.toml"
DEFAULT_HOSTS_DIR = "/etc/containerd/certs.d"
DEFAULT_LIST_2_2 = "/etc/containerd/certs.d:/etc/docker/certs.d"
# The CRI image settings' tables: config version 3 (containerd 2.x), and 2 (1.x; 2.x migrates
# it), where the same settings were spread over the plugin, its registry and its containerd
# tables. Version 1 named the plugin "cri".
_V3_IMAGES = "io.containerd.cri.v1.images"
_V2_CRI = "io.containerd.grpc.v1.cri"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")

PullPath = Literal["local", "transfer"]


@dataclass(frozen=True, slots=True)
class ImageSettings:
    """The CRI image settings that decide where hosts files are read (defaults as containerd)."""

    config_version: int = 2
    config_path: str = ""
    mirrors: bool = False  # registry.mirrors, configs or auths: deprecated, local pull only
    use_local_image_pull: bool = False
    discard_unpacked_layers: bool = False
    disable_snapshot_annotations: bool = True
    max_concurrent_downloads: int = 3
    image_pull_with_sync_fs: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """What this node needs: directories to write hosts files into, or a config change."""

    version: tuple[int, int]
    pull_path: PullPath
    config_path: str  # as containerd will use it (2.2's default filled in)
    dirs: tuple[str, ...]  # where the CRI pull reads hosts files; empty: nowhere
    why: str  # one sentence: the rule that decided
    change: str | None = None  # the setting to add (then restart containerd), if nothing works

    @property
    def works_without_change(self) -> bool:
        return bool(self.dirs)


def parse_version(text: str) -> tuple[int, int]:
    """``v2.1.9``, ``1.6.20~ds1``, ``2.2.0-rc.1`` -> (major, minor)."""
    match = _VERSION.match(text.strip())
    if match is None:
        raise ConfigError(f"containerd version {text!r}: expected e.g. v2.1.9 or 1.7.27")
    return int(match[1]), int(match[2])


def load_settings(path: str | Path = DEFAULT_CONFIG) -> ImageSettings:
    """The CRI image settings of a containerd config file and the files it imports.

    A missing file is containerd's defaults (it starts without one). Imported files are read
    in order and, as containerd merges them, each plugin table they name replaces the one
    read before.
    """
    path = Path(path)
    if not path.exists():
        return ImageSettings()
    main = _read_toml(path)
    version = int(main.get("version", 1))
    plugins: dict[str, Any] = {}
    for document in [main, *(_read_toml(Path(p)) for p in _imports(path, main))]:
        plugins.update(_migrated(document))
    return _settings(version, plugins)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _imports(parent: Path, document: dict[str, Any]) -> list[str]:
    """containerd's ``resolveImports``: relative to the file's directory; ``*`` globs."""
    found: list[str] = []
    for entry in document.get("imports", []):
        entry = os.path.normpath(entry if os.path.isabs(entry) else parent.parent / entry)
        found += sorted(glob.glob(entry)) if "*" in entry else [entry]
    return [p for p in found if Path(p).exists() and Path(p) != parent]


def _migrated(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The document's CRI image settings as one version-3 style table, keyed by plugin."""
    plugins = document.get("plugins", {})
    if int(document.get("version", 1)) >= 3:
        images = plugins.get(_V3_IMAGES)
        return {} if images is None else {_V3_IMAGES: images}
    cri = plugins.get(_V2_CRI, plugins.get("cri"))
    if cri is None:
        return {}
    flat = {k: v for k, v in cri.items() if k not in ("containerd", "registry")}
    flat.update(cri.get("containerd", {}))
    flat["registry"] = cri.get("registry", {})
    return {_V3_IMAGES: flat}


def _settings(version: int, plugins: dict[str, Any]) -> ImageSettings:
    images = plugins.get(_V3_IMAGES, {})
    registry = images.get("registry", {})
    return ImageSettings(
        config_version=version,
        config_path=str(registry.get("config_path", "")),
        mirrors=any(registry.get(k) for k in ("mirrors", "configs", "auths")),
        use_local_image_pull=bool(images.get("use_local_image_pull", False)),
        discard_unpacked_layers=bool(images.get("discard_unpacked_layers", False)),
        disable_snapshot_annotations=bool(images.get("disable_snapshot_annotations", True)),
        max_concurrent_downloads=int(images.get("max_concurrent_downloads", 3)),
        image_pull_with_sync_fs=bool(images.get("image_pull_with_sync_fs", False)),
    )


def _local_pull_reason(settings: ImageSettings) -> str | None:
    """Why containerd >= 2.1 pulls the old way (client.Pull), or None: the transfer service."""
    if settings.use_local_image_pull:
        return "use_local_image_pull = true"
    triggers = [
        (not settings.disable_snapshot_annotations, "disable_snapshot_annotations = false"),
        (settings.discard_unpacked_layers, "discard_unpacked_layers = true"),
        (settings.mirrors, "registry mirrors/configs/auths are set"),
        (settings.max_concurrent_downloads != 3, "max_concurrent_downloads is not 3"),
        (settings.image_pull_with_sync_fs, "image_pull_with_sync_fs = true"),
    ]
    return next((why for present, why in triggers if present), None)


def plan(version: tuple[int, int], settings: ImageSettings) -> Plan:
    """Where hosts files must go for this containerd's CRI pulls to read them."""
    config_path = settings.config_path
    if not config_path and not settings.mirrors and version >= (2, 2):
        config_path = DEFAULT_LIST_2_2
    local_reason = _local_pull_reason(settings) if version >= (2, 1) else "before 2.1"
    pull_path: PullPath = "local" if local_reason is not None else "transfer"
    if not config_path:
        why = "config_path is not set: the CRI reads no hosts files"
        if settings.mirrors:
            why += (" (it uses the deprecated registry.mirrors/configs, which containerd refuses "
                    "beside config_path: move them into hosts files, or on Bottlerocket use "
                    "settings.container-registry.mirrors)")
        return Plan(version, pull_path, "", (), why,
                    change=required_setting(settings.config_version))
    if pull_path == "local":
        dirs = tuple(d for d in config_path.split(":") if d)
        return Plan(version, pull_path, config_path, dirs[:1],
                    f"local pull ({local_reason}): config_path is a list, the first "
                    "directory that has the registry wins")
    why = "transfer service: config_path is read as one directory"
    if ":" in config_path:
        why += " (the list is one path whose name holds colons)"
    return Plan(version, pull_path, config_path, (config_path,), why)


def required_setting(config_version: int) -> str:
    """The lines to add to config.toml so the CRI reads hosts files (then restart containerd)."""
    table = (f"[plugins.'{_V3_IMAGES}'.registry]" if config_version >= 3
             else f'[plugins."{_V2_CRI}".registry]')
    return f'{table}\n  config_path = "{DEFAULT_HOSTS_DIR}"'
