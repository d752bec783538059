"""An expected failure is one line naming what failed, why and the fix - never a traceback; a
bug says it is one, and ``--debug`` (``REGFRONT_DEBUG``) shows its traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from regfront.cli import main
from regfront.failures import MAX_PROBLEM, describe_store, store_problem
from registry.store.errors import StoreAccessDenied
from tests.conftest import MotoS3
from tests.images import sample_layout
from tests.regfront.conftest import one_line_error

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def oci(tmp_path: Path) -> str:
    return f"oci:{sample_layout(tmp_path / 'oci').root}:multi"


def test_import_without_credentials_names_the_store_and_the_ways_to_give_them(
        runner: CliRunner, oci: str, no_aws_credentials: None, refused_port: int) -> None:
    store = f"s3://images/mirror?endpoint=http://127.0.0.1:{refused_port}&region=us-east-1"
    result = runner.invoke(main, ["import", oci, "demo:1", "--storage", store])
    assert result.exit_code == 1
    line = one_line_error(result.output)
    assert line.startswith(f"regfront: store s3://images/mirror at http://127.0.0.1:{refused_port}:")
    assert "region=" not in line  # the URL's options stay out of the message
    assert "no usable credentials" in line
    for fix in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "IRSA", "workload identity"):
        assert fix in line


def test_import_to_a_refused_endpoint_says_refused_and_how_to_set_the_endpoint(
        runner: CliRunner, oci: str, moto_s3: MotoS3, refused_port: int) -> None:
    endpoint = f"http://127.0.0.1:{refused_port}"
    store = f"s3://images?endpoint={endpoint}&region=us-east-1&max_attempts=1"
    result = runner.invoke(main, ["import", oci, "demo:1", "--storage", store])
    assert result.exit_code == 1
    line = one_line_error(result.output)
    assert f"store s3://images at {endpoint}: import: connection refused - fix:" in line
    assert "?endpoint=URL" in line
    assert "timeout" not in line


def test_import_into_a_missing_bucket_says_create_it(runner: CliRunner, oci: str,
                                                     moto_s3: MotoS3) -> None:
    result = runner.invoke(main, ["import", oci, "demo:1", "--storage",
                                  moto_s3.url("no-such-bucket-here")])
    assert result.exit_code == 1
    line = one_line_error(result.output)
    assert "NoSuchBucket" in line
    assert "fix: create bucket no-such-bucket-here" in line


@pytest.mark.parametrize(("source", "message"), [
    ("oci:{tmp}/nowhere", "{tmp}/nowhere: no such directory"),
    ("oci:{tmp}/file", "{tmp}/file: not a directory"),
    ("docker-archive:{tmp}/nowhere.tar", "{tmp}/nowhere.tar: no such file"),
])
def test_import_of_a_missing_path_says_so(runner: CliRunner, tmp_path: Path, source: str,
                                          message: str) -> None:
    (tmp_path / "file").write_text("x")
    result = runner.invoke(main, ["import", source.format(tmp=tmp_path), "demo:1",
                                  "--storage", str(tmp_path / "store")])
    assert result.exit_code == 1
    assert one_line_error(result.output).startswith(f"regfront: {message.format(tmp=tmp_path)}")


def test_sync_of_the_example_config_without_credentials_names_store_and_fix(
        runner: CliRunner, tmp_path: Path, no_aws_credentials: None) -> None:
    config = tmp_path / "regfront.yaml"
    shutil.copy(ROOT / "examples" / "regfront.yaml", config)
    result = runner.invoke(main, ["sync", "--config", str(config), "--once", "--json"])
    assert result.exit_code == 1
    line = one_line_error(result.output)
    # The primary (the last store), before any upstream is asked: every image would fail alike.
    assert line.startswith("regfront: store s3://images-primary/mirror on AWS S3: read: "
                           "no usable credentials")
    assert "AWS_ACCESS_KEY_ID" in line


def test_a_bug_says_so_in_one_line_and_debug_shows_the_traceback(
        runner: CliRunner, tmp_path: Path, oci: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("registry.imports.import_image", broken)
    args = ["import", oci, "demo:1", "--storage", str(tmp_path / "store")]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    line = one_line_error(result.output)
    assert "internal error, a bug: KeyError" in line
    assert "--debug" in line
    for debug in (["--debug", *args], args):
        shown = runner.invoke(main, debug, env={"REGFRONT_DEBUG": "1"} if debug is args else {})
        assert isinstance(shown.exception, KeyError)  # raised: Python prints the traceback


def test_debug_shows_an_expected_failures_traceback_before_its_line(runner: CliRunner,
                                                                   tmp_path: Path) -> None:
    args = ["import", f"oci:{tmp_path}/nowhere", "demo:1", "--storage", str(tmp_path / "s")]
    result = runner.invoke(main, ["--debug", *args])
    assert result.exit_code == 1
    assert result.output.startswith("Traceback (most recent call last):")
    assert result.output.splitlines()[-1] == f"regfront: {tmp_path}/nowhere: no such directory"


def test_click_usage_errors_stay_clicks(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check", "--timeout", "soon"])
    assert result.exit_code == 2
    assert "Invalid value for '--timeout'" in result.output


@pytest.mark.parametrize(("url", "said"), [
    ("s3://images/mirror?region=eu-west-1", "store s3://images/mirror on AWS S3"),
    ("s3://images?endpoint=http://minio:9000", "store s3://images at http://minio:9000"),
    ("gs://images/mirror", "store gs://images/mirror on Google Cloud Storage"),
    ("az://images/mirror?account=acct", "store az://images/mirror on Azure Blob Storage"),
    ("file:///srv/data", "store /srv/data"),
    ("./regfront-data", "store regfront-data"),
])
def test_a_store_is_named_by_its_url_without_options_and_where_it_is(
        url: str, said: str, no_aws_credentials: None) -> None:
    assert describe_store(url) == said


def test_a_library_message_becomes_one_bounded_line() -> None:
    chained = StoreAccessDenied("DefaultAzureCredential failed.\nAttempted credentials:\n\t"
                                + "EnvironmentCredential: unavailable. " * 40)
    problem = store_problem("az://images?account=acct", chained)
    assert "\n" not in problem
    assert problem.startswith("DefaultAzureCredential failed. Attempted credentials: ")
    assert len(problem) == MAX_PROBLEM
    assert problem.endswith("...")
