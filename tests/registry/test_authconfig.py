"""The ``auth:`` section: accepted as the example writes it, strict about everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import load_config, parse_config
from registry.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "auth.yaml"

AS_WRITTEN = """\
auth:
  users_file: /etc/regfront/htpasswd        # bcrypt htpasswd lines
  token:
    service: regfront                       # realm defaults to this gateway's /token
    issuer: regfront
    signing_key_file: /etc/regfront/token-key.pem   # EC or RSA private key (PEM)
    expires_in: 300
  access:
    - repositories: ["docker.io/*", "ghcr.io/*"]
      anonymous: true
    - repositories: ["private/*"]
      users: [ci, deployer]
"""


def test_the_example_is_accepted() -> None:
    config = load_config(EXAMPLE)
    assert config.auth is not None
    assert config.auth == parse_config(AS_WRITTEN, "c.yaml").auth
    auth = config.auth
    assert auth.users_file == "/etc/regfront/htpasswd"
    assert auth.token is not None
    assert (auth.token.service, auth.token.issuer, auth.token.expires_in) == \
        ("regfront", "regfront", 300.0)
    assert auth.token.signing_key_file == "/etc/regfront/token-key.pem"
    assert auth.token.realm is None
    assert auth.access[0].repositories == ["docker.io/*", "ghcr.io/*"]
    assert auth.access[0].anonymous
    assert not auth.access[0].users
    assert auth.access[1].users == ["ci", "deployer"]
    assert not auth.access[1].anonymous


def test_no_auth_section_means_auth_off() -> None:
    assert parse_config("", "c.yaml").auth is None


def test_every_mode_together() -> None:
    config = parse_config("""\
auth:
  token: {signing_key_file: /k.pem, realm: "https://regfront.example/token",
          verify_key_files: [/old.pem], expires_in: 5m}
  issuers:
    - issuer: https://kubernetes.default.svc
      audience: regfront
      jwks_file: /etc/regfront/jwks.json
    - issuer: https://accounts.google.com
      audience: regfront
      jwks_url: https://www.googleapis.com/oauth2/v3/certs
      algorithms: [RS256]
  static:
    - {name: nodes, token_file: /etc/regfront/node-token}
    - {name: edge, token_file: /etc/regfront/edge-token, header: X-Regfront-Token}
  access:
    - {repositories: ["team/*"], users: ["*"]}
""", "c.yaml")
    assert config.auth is not None
    assert config.auth.token is not None
    assert config.auth.token.expires_in == 300.0
    assert config.auth.issuers[1].algorithms == ["RS256"]
    assert config.auth.issuers[0].algorithms == ["RS256", "ES256"]
    assert config.auth.static[1].header == "X-Regfront-Token"


@pytest.mark.parametrize(("text", "message"), [
    ("auth:\n  access: []\n", "c.yaml:2: auth.access: List should have at least 1 item"),
    ("auth:\n  acces:\n    - repositories: [x]\n", "c.yaml:2: auth.acces: unknown key"),
    ("auth:\n  users_file: /h\n  access:\n    - {repositories: [a], anonymous: true}\n",
     "c.yaml:1: auth: users_file needs token:"),
    ("auth:\n  token: {service: r}\n  access:\n    - {repositories: [a], anonymous: true}\n",
     "c.yaml:2: auth.token.signing_key_file: Field required"),
    ("auth:\n  token: {signing_key_file: /k, realm: 'not a url'}\n"
     "  access: [{repositories: [a]}]\n",
     "c.yaml:2: auth.token.realm: 'not a url' is not an http(s) URL"),
    ("auth:\n  token: {signing_key_file: /k, expires_in: 1}\n  access: [{repositories: [a]}]\n",
     "c.yaml:2: auth.token.expires_in: Input should be greater than or equal to 10"),
    ("auth:\n  access:\n    - repositories: ['Bad Name']\n",
     "c.yaml:3: auth.access.0.repositories: 'Bad Name' is not a repository name"),
    ("auth:\n  access:\n    - repositories: []\n", "c.yaml:3: auth.access.0.repositories:"),
    ("auth:\n  access:\n    - {repositories: [a], user: [ci]}\n",
     "c.yaml:3: auth.access.0.user: unknown key"),
    ("auth:\n  issuers:\n    - {issuer: i, audience: a}\n  access: [{repositories: [a]}]\n",
     "c.yaml:3: auth.issuers.0: set exactly one of jwks_file, jwks_url"),
    ("auth:\n  issuers:\n    - {issuer: i, audience: a, jwks_file: /j, algorithms: [HS256]}\n"
     "  access: [{repositories: [a]}]\n", "c.yaml:3: auth.issuers.0.algorithms.0: Input should"),
    ("auth:\n  issuers:\n    - {issuer: i, audience: a, jwks_url: ftp://x}\n"
     "  access: [{repositories: [a]}]\n", "c.yaml:3: auth.issuers.0: jwks_url 'ftp://x'"),
    ("auth:\n  static:\n    - {name: n, token_file: /t, header: 'Bad Header'}\n"
     "  access: [{repositories: [a]}]\n", "c.yaml:3: auth.static.0.header: invalid header name"),
    ("auth:\n  static:\n    - {name: n, token_file: /t}\n    - {name: n, token_file: /u}\n"
     "  access: [{repositories: [a]}]\n", "c.yaml:1: auth: static: duplicate name"),
])
def test_errors_name_the_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)
