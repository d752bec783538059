"""Upstreams for the sync tests: registry:2 four ways (anonymous, htpasswd, token auth, TLS).

Each registry:2 is Debian's ``docker-registry`` started once per session on a free 127.0.0.1
port by tests/e2e/harness.py's machinery, and filled by skopeo from ``sample_layout``. The token
issuer registry:2 trusts is ours (registry:2 has none): a small threaded HTTP server signing
ES256 JWTs with a self-signed certificate that registry:2 is given as its root bundle.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import random
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPSConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.harness import (
    LOOPBACK,
    Server,
    Skopeo,
    clean_env,
    free_port,
    require_tool,
    run,
    serving_registry2,
    started,
)
from tests.images import Layout, sample_layout

USER, PASSWORD = "alice", "correct horse battery staple"
SERVICE, ISSUER = "regfront-test-registry", "regfront-test-issuer"
# Where each sample ref is pushed, and extra tags (same manifest) that make list_tags paginate.
PUSHES = {"team/app:single": "single", "team/app:multi": "multi", "other/one:1": "single",
          "team/multi:latest": "multi", "team/big:1": "big"}
BIG_LAYER = 3 * 1024 * 1024 + 17  # incompressible: several blob chunks, the last one short
EXTRA_TAGS = ["t1", "t2", "t3", "t4"]


@dataclass(frozen=True)
class Upstream2:
    """A running registry:2 holding ``PUSHES`` (and ``EXTRA_TAGS`` on team/app)."""

    server: Server
    layout: Layout

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """``sample_layout`` plus ``big``: one image whose layer spans several blob chunks."""
    layout = sample_layout(tmp_path_factory.mktemp("sync-oci"))
    big = layout.image([{"big.bin": random.Random(7).randbytes(BIG_LAYER)}])
    layout.tag(big, "big")
    return layout


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    conf = tmp_path_factory.mktemp("sync-skopeo") / "registries.conf"
    conf.write_text("# nothing: no mirrors, no search registries\n")
    return Skopeo(require_tool("skopeo"), conf)


def fill(skopeo: Skopeo, server: Server, layout: Layout, creds: str | None = None) -> None:
    """Push ``PUSHES`` with skopeo, then tag team/app's single image as ``EXTRA_TAGS``."""
    auth = [f"--dest-creds={creds}"] if creds else []
    for image, ref in PUSHES.items():
        skopeo("copy", "--all", "--dest-tls-verify=false", *auth, f"oci:{layout.root}:{ref}",
               server.ref(image))
    for tag in EXTRA_TAGS:  # a copy within one repository: only a manifest PUT
        skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *auth,
               *([f"--src-creds={creds}"] if creds else []), server.ref("team/app:single"),
               server.ref(f"team/app:{tag}"))


@pytest.fixture(scope="session")
def registry2(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo,
              sample: Layout) -> Iterator[Upstream2]:
    """An anonymous registry:2."""
    work = tmp_path_factory.mktemp("sync-registry2")
    with serving_registry2(work / "root", work) as server:
        fill(skopeo, server, sample)
        yield Upstream2(server, sample)


def _ready(port: int, ca: Path | None) -> bool:
    """GET /v2/ answers (with auth on, a 401 is ready too)."""
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    connection = (HTTPSConnection(LOOPBACK, port, timeout=2.0, context=context) if context
                  else HTTPConnection(LOOPBACK, port, timeout=2.0))
    try:
        connection.request("GET", "/v2/")
        return connection.getresponse().status in (200, 401)
    except OSError:
        return False
    finally:
        connection.close()


@contextlib.contextmanager
def serving_registry2_with(root: Path, workdir: Path, *, auth: dict[str, Any] | None = None,
                           tls: tuple[Path, Path, Path] | None = None) -> Iterator[Server]:
    """harness.serving_registry2 with an ``auth:`` section, or TLS: (cert, key, CA) files."""
    binary = require_tool("docker-registry")
    port = free_port()
    listen: dict[str, Any] = {"addr": f"{LOOPBACK}:{port}", "secret": "regfront-sync-tests"}
    if tls is not None:
        listen["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config = {
        "version": "0.1",
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": listen,
        **({"auth": auth} if auth else {}),
    }
    config_path = workdir / f"registry2-{port}.yml"
    config_path.write_text(yaml.safe_dump(config))
    root.mkdir(parents=True, exist_ok=True)
    ca = tls[2] if tls else None
    with started(f"registry:2 :{port}", [binary, "serve", str(config_path)],
                 workdir / f"registry2-{port}.log", lambda: _ready(port, ca), "GET /v2/",
                 env=clean_env("REGISTRY_", "AWS_CA_BUNDLE")) as service:
        yield Server(port, root, service)


@pytest.fixture(scope="session")
def registry2_htpasswd(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo,
                       sample: Layout) -> Iterator[Upstream2]:
    """registry:2 with htpasswd auth: ``USER``/``PASSWORD`` may do anything, nobody else."""
    work = tmp_path_factory.mktemp("sync-registry2-htpasswd")
    # registry:2 reads bcrypt entries only; apache2-utils' htpasswd writes them with -B.
    line = run([require_tool("htpasswd"), "-Bbn", USER, PASSWORD]).stdout.strip()
    htpasswd = work / "htpasswd"  # must exist: registry:2 would invent a random user otherwise
    htpasswd.write_text(line + "\n")
    auth = {"htpasswd": {"realm": "regfront-test", "path": str(htpasswd)}}
    with serving_registry2_with(work / "root", work, auth=auth) as server:
        fill(skopeo, server, sample, f"{USER}:{PASSWORD}")
        yield Upstream2(server, sample)


# -- token auth --------------------------------------------------------------------------------


@dataclass
class TokenRequest:
    user: str | None  # None: anonymous
    service: str | None
    scopes: list[str]


@dataclass
class Issuer:
    """The token service: anonymous callers get pull, ``USER`` gets what it asks for."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    expires_in: int = 300
    requests: list[TokenRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def reset(self) -> list[TokenRequest]:
        with self.lock:
            seen, self.requests = self.requests, []
        return seen

    def answer(self, query: dict[str, list[str]], authorization: str | None) -> tuple[int, bytes]:
        user = None
        if authorization is not None:
            scheme, _, encoded = authorization.partition(" ")
            name, _, password = base64.b64decode(encoded).decode().partition(":")
            if scheme.lower() != "basic" or (name, password) != (USER, PASSWORD):
                return 401, b'{"details": "incorrect username or password"}'
            user = name
        scopes = [s for value in query.get("scope", []) for s in value.split(" ")]
        with self.lock:
            self.requests.append(TokenRequest(user, query.get("service", [""])[0] or None,
                                              scopes))
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")  # repository names hold no ':'
            granted = actions.split(",") if user else [a for a in actions.split(",")
                                                        if a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "iat": now, "nbf": now - 10,
                  "exp": now + self.expires_in, "jti": uuid.uuid4().hex, "access": access}
        der = self.cert.public_bytes(serialization.Encoding.DER)
        token = jwt.encode(claims, self.key, algorithm="ES256",
                           headers={"x5c": [base64.b64encode(der).decode()]})
        return 200, json.dumps({"token": token, "expires_in": self.expires_in}).encode()


def _self_signed() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _certificate(ISSUER, key, None)


@contextlib.contextmanager
def serving_issuer(issuer: Issuer) -> Iterator[Issuer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, body = (issuer.answer(parse_qs(url.query), self.headers.get("Authorization"))
                            if url.path == "/token" else (404, b"{}"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests read issuer.requests instead

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="token-issuer", daemon=True)
    thread.start()
    issuer.url = f"http://{LOOPBACK}:{server.server_address[1]}/token"
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class TokenUpstream(Upstream2):
    issuer: Issuer


@pytest.fixture(scope="session")
def registry2_token(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo,
                    sample: Layout) -> Iterator[TokenUpstream]:
    """registry:2 trusting our issuer's tokens: the Bearer flow against the real thing."""
    work = tmp_path_factory.mktemp("sync-registry2-token")
    key, cert = _self_signed()
    bundle = work / "issuer.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with serving_issuer(Issuer(key, cert)) as issuer:
        auth = {"token": {"realm": issuer.url, "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(bundle)}}
        with serving_registry2_with(work / "root", work, auth=auth) as server:
            fill(skopeo, server, sample, f"{USER}:{PASSWORD}")
            issuer.reset()
            yield TokenUpstream(server, sample, issuer)


# -- TLS ---------------------------------------------------------------------------------------


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey,
                 issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
                 ip: str | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None),
                              critical=True))
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@dataclass(frozen=True)
class TLSUpstream(Upstream2):
    ca_file: Path


@pytest.fixture(scope="session")
def registry2_tls(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo,
                  sample: Layout) -> Iterator[TLSUpstream]:
    """registry:2 over https with a certificate from a private CA (``ca_file``)."""
    work = tmp_path_factory.mktemp("sync-registry2-tls")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = _certificate("regfront test CA", ca_key, None)
    cert = _certificate(LOOPBACK, server_key, (ca, ca_key), ip=LOOPBACK)
    files = (work / "server.pem", work / "server.key", work / "ca.pem")
    files[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    files[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    with serving_registry2_with(work / "root", work, tls=files) as server:
        skopeo("copy", "--dest-tls-verify=false", f"oci:{sample.root}:single",
               f"docker://{server.host}/team/app:single")
        yield TLSUpstream(server, sample, files[2])
