"""terraform/: formatted, parseable, in the standard module shape, internally consistent, and the
examples' rendered regfront config passes regfront's own config parser.

CI cannot download providers, so `terraform validate` cannot run; these checks cover what can be
checked without them: `terraform fmt`, every file parsed (python-hcl2), the shape rules of the
terraform-aws-modules family, every reference to a variable, local, resource, data source or
module output resolved within its module, and `terraform console` (which needs no provider) on
the examples' config.tf.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from registry.config import parse_config
from registry.mirrorconfig import MirrorRule, TagFilter
from tests.deploy.conftest import ROOT, tool

TERRAFORM = ROOT / "terraform"
REQUIRED_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")
MODULES = sorted({path.parent for path in TERRAFORM.rglob("*.tf")})
CLOUDS = sorted(path for path in TERRAFORM.iterdir() if path.is_dir())
EXAMPLES = sorted(path for path in MODULES if path.parent.name == "examples")


def _terraform() -> str:
    return tool("terraform", "terraform is on the machine image; install it where it is not")


def _env() -> dict[str, str]:
    # No CLI config, no plugin downloads, no checkpoint calls home.
    env = {k: v for k, v in os.environ.items() if k != "TF_CLI_CONFIG_FILE"}
    return {**env, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _unquote(value: Any) -> str:
    text = str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


@cache
def _parsed(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        document: dict[str, Any] = hcl2.load(handle)
    return document


def _blocks(module: Path, kind: str) -> dict[str, dict[str, Any]]:
    """``variable``/``output``/``locals`` etc. of a module: name -> body."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(module.glob("*.tf")):
        for block in _parsed(path).get(kind, []):
            for name, body in block.items():
                if not name.startswith("__"):
                    found[_unquote(name)] = body
    return found


def _labelled(module: Path, kind: str) -> set[tuple[str, str]]:
    """(type, name) of every ``resource`` or ``data`` block in a module."""
    return {(_unquote(type_), _unquote(name))
            for path in module.glob("*.tf") for block in _parsed(path).get(kind, [])
            for type_, named in block.items() for name in named}


def _code(module: Path) -> str:
    """The module's HCL with comments removed (references are looked for in the rest)."""
    text = "\n".join(path.read_text() for path in sorted(module.glob("*.tf")))
    return re.sub(r"(?m)^\s*(#|//).*$|\s#.*$", "", text)


def test_terraform_fmt() -> None:
    result = subprocess.run([_terraform(), "fmt", "-check", "-recursive", "-diff",
                             str(TERRAFORM)], capture_output=True, text=True, check=False,
                            env=_env())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted(TERRAFORM.rglob("*.tf")), ids=_rel)
def test_every_file_parses(path: Path) -> None:
    assert isinstance(_parsed(path), dict)


@pytest.mark.parametrize("module", MODULES, ids=_rel)
def test_module_shape(module: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (module / name).is_file()]
    assert not missing, f"{_rel(module)} lacks {missing}"
    for name, body in _blocks(module, "variable").items():
        assert "type" in body, f"variable {name} has no type"
        assert _unquote(body.get("description", "")).strip(), f"variable {name}: no description"
    for name, body in _blocks(module, "output").items():
        assert _unquote(body.get("description", "")).strip(), f"output {name}: no description"
    assert "terraform" in _parsed(module / "versions.tf")


@pytest.mark.parametrize("cloud", CLOUDS, ids=_rel)
def test_every_cloud_has_an_example(cloud: Path) -> None:
    assert [path for path in EXAMPLES if path.is_relative_to(cloud)], _rel(cloud)


@pytest.mark.parametrize("module", MODULES, ids=_rel)
def test_singleton_resources_are_named_this(module: Path) -> None:
    by_type: dict[str, list[str]] = {}
    for type_, name in _labelled(module, "resource"):
        by_type.setdefault(type_, []).append(name)
    wrong = sorted(f"{t}.{names[0]}" for t, names in by_type.items()
                   if len(names) == 1 and names[0] != "this")
    assert not wrong, f"the only resource of its type is named `this`: {wrong}"


@pytest.mark.parametrize("module", MODULES, ids=_rel)
def test_readme_usage_then_inputs_and_outputs(module: Path) -> None:
    readme = (module / "README.md").read_text()
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert "## Usage" in headings, "README has a Usage section"
    assert headings.index("## Usage") < headings.index("## Inputs") < headings.index(
        "## Outputs")
    inputs = readme.split("## Inputs", 1)[1].split("## Outputs", 1)[0]
    outputs = readme.split("## Outputs", 1)[1]
    listed_inputs = set(re.findall(r"^\| `([a-z0-9_]+)` \|", inputs, re.M))
    listed_outputs = set(re.findall(r"^\| `([a-z0-9_]+)` \|", outputs, re.M))
    assert listed_inputs == set(_blocks(module, "variable")), "Inputs table out of date"
    assert listed_outputs == set(_blocks(module, "output")), "Outputs table out of date"


@pytest.mark.parametrize("module", MODULES, ids=_rel)
def test_references_resolve(module: Path) -> None:
    code = _code(module)
    variables = set(_blocks(module, "variable"))
    used_variables = set(re.findall(r"\bvar\.([a-z0-9_]+)", code))
    assert used_variables <= variables, f"undeclared: {used_variables - variables}"
    assert variables <= used_variables, f"declared, never used: {variables - used_variables}"
    locals_ = {name for path in module.glob("*.tf") for block in _parsed(path).get("locals", [])
               for name in block if not name.startswith("__")}
    used_locals = set(re.findall(r"\blocal\.([a-z0-9_]+)", code))
    assert used_locals <= locals_, f"undefined locals: {used_locals - locals_}"
    assert locals_ <= used_locals, f"locals never used: {locals_ - used_locals}"
    resources = _labelled(module, "resource")
    data = _labelled(module, "data")
    reference = r"(?<![\w.])(data\.)?((?:aws|azurerm|google|terraform)_[a-z0-9_]+)\.([a-z0-9_]+)"
    for is_data, type_, name in re.findall(reference, code):
        declared = data if is_data else resources
        assert (type_, name) in declared, f"{is_data}{type_}.{name} is not declared"
    calls = _blocks(module, "module")
    for name, output in re.findall(r"\bmodule\.([a-z0-9_]+)(?:\[\*\]|\[\d+\])?\.([a-z0-9_]+)",
                                   code):
        assert name in calls, f"module.{name} is not declared"
        source = (module / _unquote(calls[name]["source"])).resolve()
        assert output in _blocks(source, "output"), f"{_rel(source)} has no output {output}"
    for name, body in calls.items():
        source = (module / _unquote(body["source"])).resolve()
        inputs = set(_blocks(source, "variable"))
        given = {key for key in body
                 if key not in ("source", "providers", "count", "for_each", "depends_on",
                                "__is_block__")}
        assert given <= inputs, f"module.{name}: no such inputs {given - inputs}"
        required = {n for n, b in _blocks(source, "variable").items() if "default" not in b}
        assert required <= given, f"module.{name}: missing inputs {required - given}"


# Each cloud's store is its native one, authenticated as the workload's own identity: no keys.
NATIVE_STORE = {"aws": "s3://", "gcp": "gs://", "azure": "az://"}
KEYS = (r"\bgoogle_storage_hmac_key\b", r"\bAWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)\b",
        r"\b(primary|secondary)_access_key\b", r"_connection_string\b", r"\bAZURE_STORAGE_KEY\b",
        r"\bshared_access_key_enabled\s*=\s*true\b")


@pytest.mark.parametrize("cloud", CLOUDS, ids=_rel)
def test_native_store_without_keys(cloud: Path) -> None:
    code = "\n".join(_code(module) for module in MODULES if module.is_relative_to(cloud))
    assert f'"{NATIVE_STORE[cloud.name]}' in code, f"no {NATIVE_STORE[cloud.name]} store URL"
    found = [key for key in KEYS if re.search(key, code)]
    assert not found, f"{_rel(cloud)} handles storage keys: {found}"


# Attributes a provider deprecated, with what replaces them (checked against the providers'
# schemas when the pins in versions.tf moved).
DEPRECATED = {
    r"\bdata\.aws_region\.[a-z0-9_]+\.name\b": "aws provider 6: data.aws_region's `region`",
}


@pytest.mark.parametrize("module", MODULES, ids=_rel)
def test_no_deprecated_attributes(module: Path) -> None:
    code = _code(module)
    used = [f"{pattern}: use {instead}" for pattern, instead in DEPRECATED.items()
            if re.search(pattern, code)]
    assert not used, used


# A store URL of the form each cloud's module builds, parsed with the config.
NATIVE_URL = {"aws": "s3://acme-regfront/mirror?region=eu-west-1",
              "gcp": "gs://acme-regfront/mirror",
              "azure": "az://regfront/mirror?account=acmeregfront"}
# Rule fields config.tf leaves out unless set: their YAML default is not what null means.
OMITTED_WHEN_UNSET = {"retention"}


@pytest.mark.parametrize("example", EXAMPLES, ids=_rel)
def test_mirror_rules_type_has_every_rule_field(example: Path) -> None:
    """The examples' mirror_rules type covers regfront's rule model; `tags:` is flattened."""
    type_ = str(_blocks(example, "variable")["mirror_rules"]["type"])
    names = set(re.findall(r"\b([a-z_]+)\s*=", type_))
    wanted = (set(MirrorRule.model_fields) - {"tags"}) | set(TagFilter.model_fields)
    assert wanted <= names, f"mirror_rules lacks {sorted(wanted - names)}"


@pytest.mark.parametrize("example", EXAMPLES, ids=_rel)
def test_examples_render_a_config_regfront_accepts(example: Path, tmp_path: Path) -> None:
    """config.tf (locals only) under `terraform console`, with the example's tfvars: the YAML
    the modules hand the containers, less the `storage:` each adds, must parse."""
    for name in ("variables.tf", "config.tf"):
        shutil.copy(example / name, tmp_path / name)
    shutil.copy(example / "terraform.tfvars.example", tmp_path / "terraform.tfvars")
    for tfvars in (True, False):  # the example's values, then the variables' defaults only
        if not tfvars:
            (tmp_path / "terraform.tfvars").write_text(_required_only(example))
        result = subprocess.run([_terraform(), "console"], input="yamlencode(local.config)\n",
                                capture_output=True, text=True, check=False, cwd=tmp_path,
                                env=_env())
        assert result.returncode == 0, result.stderr
        heredoc = re.fullmatch(r"\s*<<EOT\n(.*)EOT\s*", result.stdout, re.S)
        assert heredoc is not None, result.stdout
        text = heredoc[1] + f'storage: [{{url: "{NATIVE_URL[example.parents[1].name]}"}}]\n'
        config = parse_config(text, f"{_rel(example)}/config.tf")
        assert config.mirror
        assert config.upstreams
        # Parity with the YAML: every rule field and every tag filter field is rendered (those
        # whose default is not null only when set).
        rules = yaml.safe_load(heredoc[1])["mirror"]
        rendered = {key for rule in rules for key in rule}
        assert set(MirrorRule.model_fields) - OMITTED_WHEN_UNSET <= rendered
        assert set(TagFilter.model_fields) <= {key for rule in rules for key in rule["tags"]}
        if tfvars:  # the tfvars example shows the fields in use, not only their defaults
            rule = config.mirror[0]
            assert rule.referrers
            assert rule.tag_ttl
            assert rule.tag_filter.exclude
            assert "retention" in rules[0]
            assert rule.tag_filter.names
            assert rule.tag_filter.include
        else:
            assert [rule.name for rule in config.mirror] == ["nginx"]


def _required_only(example: Path) -> str:
    """tfvars for the variables without defaults, taken from the example's tfvars file."""
    required = {name for name, body in _blocks(example, "variable").items()
                if "default" not in body}
    text = (example / "terraform.tfvars.example").read_text()
    kept, keep = [], False
    for line in text.splitlines():
        if line and not line[0].isspace() and line[0] != "}":
            keep = line.split("=", 1)[0].strip() in required
        if keep:
            kept.append(line)
    return "\n".join(kept) + "\n"
