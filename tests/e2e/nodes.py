"""Kubernetes nodes' containerd for kubelet's pull path: 1.6, 2.1.9 and 2.2.7 with the CRI on.

kubelet pulls through the CRI ImageService, and from containerd 2.1 that pull goes through the
transfer service, which reads the CRI registry ``config_path`` differently from ``ctr``. So these
daemons are driven over the CRI (node/cri.py), each configured like a node (``NodeConfig``).

Every daemon runs in a mount namespace of its own (``unshare --mount``) with private mounts over
the host paths it would otherwise touch or read:

- ``/run``: containerd 2.x creates ``/run/containerd`` whatever its ``state`` says;
- ``/etc/containerd`` and ``/etc/docker``: 2.2 reads ``/etc/containerd/certs.d:/etc/docker/certs.d``
  when ``config_path`` is unset, so a test writes hosts files there. The daemon sees its node
  dir's ``etc-containerd`` and ``etc-docker`` there (``Node.view`` maps a path), and the host's
  /etc never changes;
- ``/etc/hosts``: ``registry-1.docker.io`` (docker.io's default host) is 127.0.0.1, where nothing
  listens on 443: a pull that ignores hosts.toml fails at once, naming that host, and never
  reaches Docker Hub whatever the machine's network.

Everything else (root, state, sockets, CNI and CDI dirs, opt) is under the node's temp dir.
``NodePool`` keeps at most one daemon per version and restarts it when a test asks for another
config: containerd reads its config at start, so a config change is a restart on a real node too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.cri import AuthConfig, CRIClient, CRIError, Image
from tests.e2e.harness import (
    LOOPBACK,
    MANIFEST_ACCEPT,
    MAX_SOCKET_PATH,
    NOTES,
    Containerd,
    Server,
    Service,
    clean_env,
    free_port,
    http,
    overlay_mount_works,
    regfront_binary,
    require_tool,
    run,
    started,
)

Version = Literal["1.6", "2.1.9", "2.2.7"]
VERSIONS: tuple[Version, ...] = ("1.6", "2.1.9", "2.2.7")
# Static builds of the public releases (shared/tools/containerd/README.md); 1.6 is Debian's.
TOOLS = Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "containerd"
STATIC_BUILDS: dict[Version, str] = {
    "2.1.9": "e59694c2752ef6beaa718af599f1a2976e40be4bd568c431afc6b33864e283d4",
    "2.2.7": "e9bac7e3fa9693b0a8f136b96fc908a9961c1e6b450419ab6f23035a691e764b",
}
DEFAULT_LIST = "/etc/containerd/certs.d:/etc/docker/certs.d"  # 2.2's config_path when unset
UPSTREAM_HOST = "registry-1.docker.io"  # where containerd sends docker.io without hosts.toml
_BASE_PREFIX = 23  # characters of "<version>-<config>" in a node's dir name


@dataclass(frozen=True)
class NodeConfig:
    """The CRI image settings of a node: the rows of the kubelet-path matrix."""

    name: str
    hosts_dirs: Literal[0, 1, 2]  # config_path: 0 unset, 1 one directory, 2 a ':' list of two
    discard_unpacked_layers: bool = False  # makes 2.1+ pull the older, local way
    use_local_image_pull: bool = False  # 2.1+: the same, by name

    def __str__(self) -> str:
        return self.name


ONE_DIR = NodeConfig("one-dir", 1)
LIST = NodeConfig("list", 2)  # EKS AL2023's shape
LIST_DISCARD = NodeConfig("list+discard", 2, discard_unpacked_layers=True)
LIST_LOCAL_PULL = NodeConfig("list+local-pull", 2, use_local_image_pull=True)
UNSET = NodeConfig("unset", 0)


def _q(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def config_toml(version: Version, config: NodeConfig, base: Path, address: Path,
                snapshotter: str) -> str:
    """containerd's config.toml for ``config``: version 2 for 1.6, version 3 for 2.x.

    Serving the ImageService needs no runc, CNI plugin or sandbox image: only every path the
    CRI would create kept in the node (its CNI conf dir is created to be watched), and on 2.x
    NRI off (its socket is /var/run/nri) and CDI off.
    """
    assert not (version == "1.6" and config.use_local_image_pull), "1.6 has no such setting"
    dirs = hosts_dirs(base)[:config.hosts_dirs]
    config_path = [f"  config_path = {_q(':'.join(map(str, dirs)))}"] if dirs else []
    discard = f"  discard_unpacked_layers = {_bool(config.discard_unpacked_layers)}"
    lines = [f"version = {2 if version == '1.6' else 3}",
             f"root = {_q(base / 'root')}", f"state = {_q(base / 'state')}",
             "[grpc]", f"  address = {_q(address)}",
             "[debug]", '  level = "info"',  # the CRI logs each pull and what it resolved
             '[plugins."io.containerd.internal.v1.opt"]', f"  path = {_q(base / 'opt')}"]
    if version == "1.6":
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        lines += [f"[{cri}.containerd]", f"  snapshotter = {_q(snapshotter)}", discard,
                  f"[{cri}.cni]", f"  bin_dir = {_q(base / 'cni-bin')}",
                  f"  conf_dir = {_q(base / 'cni')}",
                  f"[{cri}.registry]", *config_path]
    else:
        images = 'plugins."io.containerd.cri.v1.images"'
        runtime = 'plugins."io.containerd.cri.v1.runtime"'
        lines += [f"[{images}]", f"  snapshotter = {_q(snapshotter)}", discard,
                  f"  use_local_image_pull = {_bool(config.use_local_image_pull)}",
                  f"[{images}.registry]", *config_path,
                  f"[{runtime}]", "  enable_cdi = false", f"  cdi_spec_dirs = [{_q(base / 'cdi')}]",
                  f"[{runtime}.cni]", f"  bin_dirs = [{_q(base / 'cni-bin')}]",
                  f"  conf_dir = {_q(base / 'cni')}",
                  '[plugins."io.containerd.nri.v1.nri"]', "  disable = true",
                  '[plugins."io.containerd.image-verifier.v1.bindir"]',
                  f"  bin_dir = {_q(base / 'image-verifier')}"]
    return "\n".join([*lines, ""])


def _bool(value: bool) -> str:
    return "true" if value else "false"


# Host paths each daemon sees as its own, and the entry of its node dir mounted over each.
PRIVATE = {Path("/etc/containerd"): "etc-containerd", Path("/etc/docker"): "etc-docker",
           Path("/etc/hosts"): "etc-hosts"}
# Run by root in the daemon's new mount namespace, before containerd starts. Bind mounts of the
# node's dir, not tmpfs: what a test or the agent writes there outlives a restart of the node.
_NAMESPACE_SETUP = """set -eu
node=$1; shift
mount -t tmpfs -o mode=0755 regfront-node /run
mount --bind "$node/etc-containerd" /etc/containerd
if [ -d /etc/docker ]; then mount --bind "$node/etc-docker" /etc/docker; fi
mount --bind "$node/etc-hosts" /etc/hosts
exec "$@"
"""


@dataclass(frozen=True)
class Node:
    """One running containerd with the CRI on, configured as ``config``."""

    version: Version
    config: NodeConfig
    base: Path  # everything of this node's on the host: config, root, state, log, its /etc
    address: Path  # the CRI socket (and ctr's)
    config_file: Path  # its config.toml, the same path inside its mount namespace and out
    snapshotter: str
    service: Service
    cri: CRIClient
    private: tuple[Path, ...]  # the PRIVATE paths the host has, so the daemon has its own

    @property
    def config_path(self) -> str | None:
        """``config_path`` as this daemon's CRI uses it: 2.2's default list when unset."""
        if self.config.hosts_dirs:
            return ":".join(map(str, hosts_dirs(self.base)[:self.config.hosts_dirs]))
        return DEFAULT_LIST if self.version == "2.2.7" else None

    @property
    def hosts_dirs(self) -> list[Path]:
        """The directories of ``config_path`` in order; the first is where every doc says to
        write."""
        return [Path(d) for d in self.config_path.split(":")] if self.config_path else []

    @property
    def literal_hosts_dir(self) -> Path:
        """The one directory the 2.1+ transfer service reads: the whole list as one path."""
        assert self.config_path, f"{self}: no config_path, no hosts dir"
        return Path(self.config_path)

    def viewable(self, path: Path) -> bool:
        """Is ``path`` the node's own: under its dir or on one of its private mounts?"""
        return path.is_relative_to(self.base) or any(map(path.is_relative_to, self.private))

    def view(self, path: Path) -> Path:
        """Where this process reads or writes ``path`` as the daemon sees it.

        Only the node's own paths: anything else is the host's, and a test must never write to
        the host's /etc thinking it is the node's.
        """
        if path.is_relative_to(self.base):
            return path
        for host_path in self.private:
            if path.is_relative_to(host_path):
                return self.base / PRIVATE[host_path] / path.relative_to(host_path)
        pytest.fail(f"{path} is neither under {self.base} nor on one of the node's private "
                    f"mounts {[str(p) for p in self.private]}", pytrace=False)

    def clear_hosts(self) -> None:
        """Remove every hosts dir a test may have written (configured and literal)."""
        dirs = [*self.hosts_dirs, self.literal_hosts_dir] if self.config_path else []
        for directory in filter(self.viewable, dirs):
            shutil.rmtree(self.view(directory), ignore_errors=True)

    def containerd(self) -> Containerd:
        """The harness' ``ctr`` driver on this daemon (namespace regfront-test, not k8s.io)."""
        return Containerd(self.address, self.snapshotter, "the CRI's", self.service)

    def log_tail(self) -> str:
        return self.service.log_tail(6000)

    def __str__(self) -> str:
        return f"containerd {self.version} ({self.config})"


def hosts_dirs(base: Path) -> list[Path]:
    """A node's two hosts dirs, as a ':' list names them (EKS: certs.d, then Docker's)."""
    return [base / "certs.d", base / "docker-certs.d"]


def prepare_node(version: Version, config: NodeConfig, base: Path, snapshotter: str) -> None:
    """Write a new node's config.toml, /etc/hosts and the dirs its private mounts show."""
    for directory in ("etc-containerd", "etc-docker"):
        (base / directory).mkdir(mode=0o755)
    # Go reads /etc/hosts before DNS: docker.io's default host is one that refuses at once.
    (base / "etc-hosts").write_text(f"{Path('/etc/hosts').read_text()}\n"
                                    f"127.0.0.1 {UPSTREAM_HOST}\n")
    (base / "config.toml").write_text(config_toml(version, config, base,
                                                  base / "containerd.sock", snapshotter))


@contextlib.contextmanager
def running_node(binary: Path, version: Version, config: NodeConfig, base: Path,
                 snapshotter: str) -> Iterator[Node]:
    """containerd ``binary`` on the node ``prepare_node`` wrote in ``base``, until the end."""
    if not Path("/etc/containerd").is_dir():
        pytest.fail("no /etc/containerd to mount the node's own over (Debian's containerd "
                    "package creates it: run `make system-deps`); the suite never creates "
                    "directories in the host's /etc", pytrace=False)
    address, config_file = base / "containerd.sock", base / "config.toml"
    assert len(str(address)) <= MAX_SOCKET_PATH, f"{address}: too long for a unix socket"
    argv = [require_tool("unshare"), "--mount", "--propagation", "private",
            "sh", "-c", _NAMESPACE_SETUP, "node-setup", str(base),
            str(binary), "--config", str(config_file)]
    private = tuple(path for path in PRIVATE if path.exists())
    cri = CRIClient(address, timeout=2.0)

    def ready() -> bool:
        if not address.exists():
            return False
        try:
            cri.version()
        except CRIError as exc:
            if exc.code == grpc.StatusCode.UNIMPLEMENTED:  # the CRI plugin did not load
                pytest.fail(f"containerd {version}: no CRI on its socket: {exc}\n"
                            f"{(base / 'containerd.log').read_text(errors='replace')[-6000:]}",
                            pytrace=False)
            return False  # not serving yet, or 1.6's "server is not initialized yet"
        return True

    # No proxy: the gateway is on loopback and docker.io must fail fast, not leave the machine.
    env = clean_env("CONTAINERD_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                    "ALL_PROXY", "all_proxy")
    try:
        with started(f"containerd {version} ({config})", argv, base / "containerd.log",
                     ready, "CRI Version", env=env) as service:
            node = Node(version, config, base, address, config_file, snapshotter, service, cri,
                        private)
            actual = cri.version().runtime_version
            assert actual.lstrip("v").startswith(version), f"{node} reports {actual}"
            yield node
    finally:
        cri.close()


def containerd_binary(version: Version, workdir: Path) -> Path:
    """1.6: Debian's containerd. 2.x: the static build, unpacked into ``workdir`` and checked."""
    if version == "1.6":
        return Path(require_tool("containerd"))
    packed = TOOLS / f"containerd-v{version}.xz"
    if not packed.is_file():
        pytest.fail(f"{packed} is missing: the kubelet-path tests need the static containerd "
                    f"builds of shared/tools/containerd (see its README.md)", pytrace=False)
    binary = workdir / f"containerd-{version}"
    digest = hashlib.sha256()
    with lzma.open(packed) as source, binary.open("wb") as out:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    assert digest.hexdigest() == STATIC_BUILDS[version], f"{packed}: not the build in README.md"
    binary.chmod(0o755)
    return binary


class NodePool:
    """At most one running daemon per version; ``node()`` restarts it for another config."""

    def __init__(self, workdir: Path) -> None:
        self._short: Path | None = None
        # A node's socket is WORKDIR/<32-char dir>/containerd.sock.ttrpc: keep that in sun_path.
        if len(str(workdir)) + len("/-12345678/containerd.sock") + _BASE_PREFIX > MAX_SOCKET_PATH:
            workdir = self._short = Path(tempfile.mkdtemp(prefix="rf-nodes-"))
        self.workdir = workdir
        problem = overlay_mount_works(workdir)
        self.snapshotter = "overlayfs" if problem is None else "native"
        NOTES.append(f"CRI nodes' snapshotter: {self.snapshotter} ({problem or 'overlay works'})")
        self._binaries: dict[Version, Path] = {}
        self._running: dict[Version, tuple[Node, ExitStack]] = {}
        self._restarted: set[Version] = set()  # its config.toml may no longer match its label

    def node(self, version: Version, config: NodeConfig) -> Node:
        """A running ``version`` configured as ``config``, with no hosts files written yet.

        The running daemon if it has that config (and was never restarted), else a new node (its
        own dir, an empty image store) in place of the old one.
        """
        current = self._running.get(version)
        if current is not None and current[0].config == config and version not in self._restarted:
            current[0].service.check_alive()
            current[0].clear_hosts()
            return current[0]
        self.stop(version)
        prefix = f"{version}-{config}"[:_BASE_PREFIX] + "-"
        base = Path(tempfile.mkdtemp(prefix=prefix, dir=self.workdir))
        prepare_node(version, config, base, self.snapshotter)
        self._restarted.discard(version)
        return self._start(version, config, base)

    def restart(self, node: Node) -> Node:
        """Stop ``node`` and start it again as it is now (its config.toml, /etc, image store).

        The old ``Node`` is dead: use the one returned. ``node()`` never hands this one out again.
        """
        assert self._running.get(node.version, (None,))[0] is node, f"{node} is not running"
        self.stop(node.version)
        self._restarted.add(node.version)
        return self._start(node.version, node.config, node.base)

    def _start(self, version: Version, config: NodeConfig, base: Path) -> Node:
        if version not in self._binaries:
            self._binaries[version] = containerd_binary(version, self.workdir)
        stack = ExitStack()
        node = stack.enter_context(running_node(self._binaries[version], version, config, base,
                                                self.snapshotter))
        self._running[version] = (node, stack)
        return node

    def stop(self, version: Version) -> None:
        current = self._running.pop(version, None)
        if current is not None:
            current[1].close()

    def close(self) -> None:
        for version in list(self._running):
            self.stop(version)
        for version, binary in self._binaries.items():
            if version in STATIC_BUILDS:  # 60 MB each, unpacked again by the next session
                binary.unlink(missing_ok=True)
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)


# -- pulling as kubelet does -------------------------------------------------------------------


def write_hosts(node: Node, directory: Path, gateway: str, upstream: str,
                registry: str = "docker.io", *flags: str) -> Path:
    """``regfront containerd-config`` into ``directory`` as ``node`` sees it; returns the file.
    ``flags``: more of its options (``--header``, ``--ca-file``)."""
    out = node.view(directory)
    written = run([regfront_binary(), "containerd-config", "--gateway", gateway,
                   "--registry", f"{registry}={upstream}", "--out", str(out), *flags],
                  env=clean_env("REGFRONT_")).stdout
    assert written.split() == [str(out / registry / "hosts.toml")], written
    return out / registry / "hosts.toml"


def unreachable_url() -> str:
    """An http URL where nothing listens: connection refused, at once."""
    return f"http://{LOOPBACK}:{free_port()}"


def _answered(gateway: Server, counts: Callable[[dict[str, str]], bool]) -> int:
    """Requests the gateway answered whose labels (route, method, status) ``counts``."""
    body = http("GET", f"{gateway.url}/metrics").body.decode()
    return sum(int(sample.value) for family in text_string_to_metric_families(body)
               if family.name == "regfront_http_requests" for sample in family.samples
               if sample.name.endswith("_total") and counts(sample.labels))


def gateway_pull_requests(gateway: Server) -> int:
    """Manifest and blob requests the gateway has answered, from its /metrics."""
    return _answered(gateway, lambda labels: labels.get("route") in ("manifests", "blobs"))


def gateway_redirects(gateway: Server) -> int:
    """Blob GETs the gateway answered with a 307 to its bucket, from its /metrics."""
    return _answered(gateway, lambda labels: labels.get("route") == "blobs"
                     and labels.get("status") == "307")


@dataclass(frozen=True)
class PullOutcome:
    """What a CRI PullImage did: its answer or error, ImageStatus after, the gateway's share."""

    node: Node
    ref: str
    image_ref: str | None
    error: CRIError | None
    image: Image | None
    gateway_requests: int  # manifest and blob requests the gateway answered meanwhile

    def describe(self) -> str:
        result = f"error {self.error}" if self.error else f"pulled {self.image_ref}"
        return (f"{self.node}: PullImage {self.ref}: {result}; ImageStatus {self.image}; "
                f"{self.gateway_requests} gateway requests\n--- {self.node} log ---\n"
                f"{self.node.log_tail()}")


@contextlib.contextmanager
def cri_pull(node: Node, gateway: Server, ref: str,
             auth: AuthConfig | None = None) -> Iterator[PullOutcome]:
    """PullImage ``ref`` over the CRI, as kubelet does (``auth``: a pull secret's
    credentials); RemoveImage when the block ends."""
    before = gateway_pull_requests(gateway)
    image_ref: str | None = None
    error: CRIError | None = None
    try:
        image_ref = node.cri.pull_image(ref, auth)
    except CRIError as exc:
        error = exc
    try:
        yield PullOutcome(node, ref, image_ref, error, node.cri.image_status(ref),
                          gateway_pull_requests(gateway) - before)
    finally:
        node.cri.remove_image(ref)


def assert_via_gateway(outcome: PullOutcome, gateway: Server, name: str,
                       reference: str) -> None:
    """The pull succeeded, asked the gateway, and stored the manifest and config it serves."""
    assert outcome.error is None, outcome.describe()
    manifest = http("GET", f"{gateway.url}/v2/{name}/manifests/{reference}?ns=docker.io",
                    {"Accept": MANIFEST_ACCEPT})
    digest = manifest.headers["Docker-Content-Digest"]
    config = manifest.json()["config"]["digest"]
    assert outcome.image is not None, outcome.describe()
    assert outcome.image.id == outcome.image_ref == config, outcome.describe()
    assert f"docker.io/{name}@{digest}" in outcome.image.repo_digests, outcome.describe()
    assert outcome.gateway_requests > 0, outcome.describe()


def assert_hosts_ignored(outcome: PullOutcome) -> None:
    """The pull went to docker.io's default host, never to the gateway, and failed there."""
    assert outcome.error is not None, outcome.describe()
    assert UPSTREAM_HOST in outcome.error.details, outcome.describe()
    assert outcome.image is None, outcome.describe()
    assert outcome.gateway_requests == 0, outcome.describe()


def assert_pull_follows_redirects(node: Node, gateway: Server, ref: str, digest: str) -> None:
    """A CRI pull of ``ref`` (an index; the node's platform: a config and two layers) from a
    gateway on a bucket, the fallback a closed port: succeeds, with every blob GET a 307 the
    node followed."""
    write_hosts(node, node.hosts_dirs[0], gateway.url, unreachable_url())
    before = gateway_redirects(gateway)
    with cri_pull(node, gateway, ref) as outcome:
        assert outcome.error is None, outcome.describe()
        assert outcome.image is not None, outcome.describe()
        name = ref.rpartition(":")[0]
        assert f"{name}@{digest}" in outcome.image.repo_digests, outcome.describe()
    assert gateway_redirects(gateway) - before >= 3
