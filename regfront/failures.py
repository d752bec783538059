"""What the ``regfront`` command says when something fails that can fail without a bug: one line
naming what failed (a store by its URL without query or credentials, and its endpoint; an
upstream), why, and what fixes it.

The failures are the typed ones the packages raise (``EXPECTED``); anything else out of a
command is a bug and the command says so, with its traceback under ``--debug``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from registry.errors import ConfigError, RegistryError
from registry.store.errors import (
    StoreAccessDenied,
    StoreError,
    StoreRejected,
    StoreServerError,
    StoreThrottled,
    StoreTimeout,
    StoreUnreachable,
    connection_failure,
)
from registry.upstream.errors import UpstreamAuthError, UpstreamError, UpstreamUnavailable
from registry.urls import redact

EXPECTED: tuple[type[BaseException], ...] = (
    ConfigError, RegistryError, StoreError, UpstreamError,
    # A path the user named: a config file, a directory, a certificate.
    FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)

CREDENTIALS_FIX = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (on Google Cloud: an HMAC "
                   "key), or AWS_PROFILE, or run with a role: IRSA or Pod Identity on EKS, the "
                   "instance or task role on EC2/ECS, on GKE workload identity reading the HMAC "
                   "key's secret")
GCS_CREDENTIALS_FIX = ("set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or "
                       "run gcloud auth application-default login, or run with an identity: "
                       "workload identity on GKE, the service's account on Cloud Run and GCE; "
                       "it needs roles/storage.objectViewer (objectAdmin where regfront writes)")
AZURE_CREDENTIALS_FIX = ("give DefaultAzureCredential an identity: workload identity on AKS, a "
                         "managed identity, AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, "
                         "or az login (or AZURE_STORAGE_CONNECTION_STRING with an account key); "
                         "it needs Storage Blob Data Reader (Contributor where regfront writes) "
                         "and Storage Blob Delegator for signed URLs")
_ENDPOINT_ENV = {"s3": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
                 "gs": ("STORAGE_EMULATOR_HOST",), "az": ()}
_CLOUD = {"s3": "AWS S3", "gs": "Google Cloud Storage", "az": "Azure Blob Storage"}
MAX_PROBLEM = 300  # characters of a library's message (Azure's credential chain runs to 2,000)


def leaf(error: BaseException) -> BaseException:
    """The first failure inside the exception groups concurrent work raises."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


store_label = redact  # a store's URL as it may be shown (registry/urls.py)


def store_endpoint(url: str) -> str | None:
    """Where a cloud store's requests go: its ``?endpoint=``, else the variables its library
    reads; None for the cloud itself and for stores that are not in one."""
    scheme = urlsplit(url).scheme
    if scheme not in _ENDPOINT_ENV:
        return None
    try:
        if scheme == "s3":
            from registry.store.s3 import parse_url as parse_s3

            endpoint = parse_s3(url).endpoint
        elif scheme == "gs":
            from registry.store.gcs import parse_url as parse_gs

            endpoint = parse_gs(url).endpoint
        else:
            from registry.store.azure import parse_url as parse_az

            endpoint = parse_az(url).endpoint
    except ConfigError:
        return None
    return endpoint or next((os.environ[v] for v in _ENDPOINT_ENV[scheme] if os.environ.get(v)),
                            None)


def describe_store(url: str) -> str:
    """``store s3://bucket/prefix at http://host:port`` (or ``on AWS S3``): a store line's
    start."""
    endpoint = store_endpoint(url)
    cloud = _CLOUD.get(urlsplit(url).scheme)
    where = f" at {endpoint}" if endpoint else f" on {cloud}" if cloud else ""
    return f"store {store_label(url)}{where}"


def store_fix(url: str, error: StoreError) -> str:
    """What to do about ``error`` from the store at ``url``."""
    scheme = urlsplit(url).scheme
    s3 = scheme == "s3"
    if scheme in ("gs", "az"):
        return _cloud_fix(url, error)
    cause = error.__cause__
    code = str(getattr(cause, "response", {}).get("Error", {}).get("Code", ""))
    bucket = urlsplit(url).netloc
    if isinstance(error, StoreAccessDenied):
        if not s3:
            return (f"let this user (uid {os.getuid()}) read and write {store_label(url)}, "
                    "or choose another --storage")
        if not code:  # no answer was asked for: the AWS chain found no credentials
            return CREDENTIALS_FIX
        if code == "InvalidAccessKeyId":
            return ("this endpoint does not know the access key: are these keys for another "
                    "account or cloud? check ?endpoint= and the credentials in use")
        if code == "SignatureDoesNotMatch":
            return "the secret key does not belong to the access key, or ?region= is wrong"
        if code in ("ExpiredToken", "TokenRefreshRequired", "InvalidToken"):
            return "the session credentials expired: renew them (aws sso login, or the role)"
        return (f"grant this identity s3:ListBucket, s3:GetObject (and s3:PutObject, "
                f"s3:DeleteObject where regfront writes) on bucket {bucket}")
    if isinstance(error, StoreUnreachable):
        how = connection_failure(error) or ""
        if not s3:
            return "check the store's path and its disk"
        if "not resolved" in how:
            return ("check the host in ?endpoint= (with virtual-host addressing the bucket is "
                    "part of the host name: try ?addressing=path)")
        if "TLS" in how:
            return "trust the endpoint's CA (AWS_CA_BUNDLE=/path/ca.pem) or fix its certificate"
        return ("check that the store runs there and the host and port are right: set them "
                "with ?endpoint=URL in the storage URL (or AWS_ENDPOINT_URL_S3)")
    if isinstance(error, StoreTimeout):
        return ("check the network path to the endpoint (firewall, proxy, VPC endpoint); if it "
                "is only slow, raise ?connect_timeout= and ?read_timeout=")
    if isinstance(error, StoreRejected):
        if code == "NoSuchBucket":
            return (f"create bucket {bucket} (terraform/) or fix the bucket name; on another "
                    "cloud, set ?endpoint=")
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed",
                    "IllegalLocationConstraintException"):
            return f"set ?region= to bucket {bucket}'s region"
        return "check the storage URL and the bucket's settings"
    if isinstance(error, StoreThrottled):
        return "the store asks for fewer requests: retry later, or lower sync.blob_concurrency"
    if isinstance(error, StoreServerError):
        return "the store failed on its side: retry later" + ("" if s3 else "; check the disk")
    return "retry later"


def _cloud_fix(url: str, error: StoreError) -> str:
    """Fixes for the Google (gs://) and Azure (az://) stores."""
    gcs = urlsplit(url).scheme == "gs"
    credentials = GCS_CREDENTIALS_FIX if gcs else AZURE_CREDENTIALS_FIX
    container = f"{'bucket' if gcs else 'container'} {urlsplit(url).netloc}"
    if isinstance(error, StoreAccessDenied):
        return credentials
    if isinstance(error, StoreUnreachable):
        if gcs and store_endpoint(url) is None and "metadata" in str(error).lower():
            return credentials  # no ADC: the library asked for a metadata server
        return ("check that this machine reaches the endpoint (?endpoint=" +
                (", or STORAGE_EMULATOR_HOST for an emulator" if gcs else "") + ") and that "
                "it runs")
    if isinstance(error, StoreRejected):
        return f"check that {container} exists (terraform/) and the storage URL"
    if isinstance(error, StoreTimeout):
        return "check the network path to the store; if it is only slow, raise ?read_timeout="
    return "retry later"


def explain_store(url: str, error: StoreError, doing: str = "") -> str:
    """One line: which store, what it was asked (``doing``), what went wrong, the fix."""
    what = f"{doing}: " if doing else ""
    return f"{describe_store(url)}: {what}{store_problem(url, error)} - fix: " \
           f"{store_fix(url, error)}"


def store_problem(url: str, error: StoreError) -> str:
    """What went wrong, without the endpoint ``describe_store`` already names."""
    endpoint = store_endpoint(url)
    text = str(error)
    if endpoint:  # the S3 store names the endpoint it could not reach: said once is enough
        text = text.removeprefix(f"{endpoint.rstrip('/')}: ")
    how = connection_failure(error) if isinstance(error, StoreUnreachable) else None
    text = text if how is None or how in text else f"{how} ({text})"
    text = " ".join(text.split())  # one line, whatever the library wrote
    return text if len(text) <= MAX_PROBLEM else text[:MAX_PROBLEM - 3] + "..."


def upstream_fix(error: UpstreamError) -> str:
    """What to do about ``error`` from an upstream registry."""
    if isinstance(error, UpstreamAuthError):
        return ("check the upstream's credentials: the environment variables or files its "
                "credentials: section names are set, and the token is valid for reading")
    if isinstance(error, UpstreamUnavailable):
        return ("check that this machine reaches it (proxy: HTTPS_PROXY; firewall), or put a "
                "reachable mirror first in its urls:")
    return "check the repository and tag names"


def explain(error: BaseException) -> str:
    """One line for an ``EXPECTED`` failure met outside a known store or upstream."""
    error = leaf(error)
    if isinstance(error, StoreError):
        return f"store: {error}"  # the caller did not say which: the message may
    if isinstance(error, UpstreamError):
        return f"{error} - fix: {upstream_fix(error)}"
    if isinstance(error, OSError):
        return f"{error.filename}: {error.strerror}" if error.filename else str(error)
    return str(error)
