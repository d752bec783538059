"""A minimal client for the CRI API (runtime.v1) on containerd's socket: kubelet's pull path.

kubelet never runs ``ctr``: it pulls through the CRI ``ImageService``, which from containerd 2.1
goes through the transfer service and reads the registry ``config_path`` its own way (see
node/containerd.py). Proving that a pull goes through the gateway therefore means pulling the way
kubelet does, over gRPC. Four calls are enough, so their messages are encoded by hand
(node/protowire.py) from k8s.io/cri-api/pkg/apis/runtime/v1/api.proto, with the field numbers
given below; grpcio carries the bytes.

Errors: every failed call raises :class:`CRIError`, naming the method, the socket, the gRPC
status and containerd's message (which says which host a failed pull tried).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc

from node import protowire as pw

DEFAULT_TIMEOUT = 10.0  # seconds for Version, ImageStatus, RemoveImage
DEFAULT_PULL_TIMEOUT = 120.0  # seconds for PullImage: a whole image, possibly from upstream
# VersionRequest.version: the CRI API version the client speaks (kubelet sends this one).
CLIENT_API_VERSION = "0.1.0"

VERSION = "/runtime.v1.RuntimeService/Version"
PULL_IMAGE = "/runtime.v1.ImageService/PullImage"
IMAGE_STATUS = "/runtime.v1.ImageService/ImageStatus"
REMOVE_IMAGE = "/runtime.v1.ImageService/RemoveImage"

T = TypeVar("T")


class CRIError(Exception):
    """A CRI call failed: the runtime's status, a deadline, or a response that did not decode."""

    def __init__(self, method: str, socket: str, code: grpc.StatusCode | None,
                 details: str) -> None:
        status = code.name if code is not None else "bad response"
        super().__init__(f"CRI {method} on {socket}: {status}: {details}")
        self.method = method
        self.socket = socket
        self.code = code
        self.details = details


# -- messages ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuntimeVersion:
    """VersionResponse: version = 1, runtime_name = 2, runtime_version = 3,
    runtime_api_version = 4."""

    version: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """AuthConfig: username = 1, password = 2, auth = 3, server_address = 4,
    identity_token = 5, registry_token = 6. Secrets stay out of repr."""

    username: str = ""
    password: str = field(default="", repr=False)
    auth: str = field(default="", repr=False)  # base64 "user:password"
    server_address: str = ""
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    def encode(self) -> bytes:
        return b"".join([
            pw.string(1, self.username), pw.string(2, self.password), pw.string(3, self.auth),
            pw.string(4, self.server_address), pw.string(5, self.identity_token),
            pw.string(6, self.registry_token),
        ])


@dataclass(frozen=True, slots=True)
class Image:
    """Image: id = 1 (the config digest), repo_tags = 2, repo_digests = 3 (name@manifest
    digest), size = 4 (uint64), pinned = 8. The other fields are skipped."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    pinned: bool = False


def image_spec(image: str) -> bytes:
    """ImageSpec: image = 1. Annotations, runtime handler and the rest stay unset."""
    return pw.string(1, image)


def encode_version_request(api_version: str = CLIENT_API_VERSION) -> bytes:
    """VersionRequest: version = 1."""
    return pw.string(1, api_version)


def encode_pull_image_request(image: str, auth: AuthConfig | None = None) -> bytes:
    """PullImageRequest: image = 1 (ImageSpec), auth = 2 (AuthConfig); no sandbox_config (3)."""
    return (pw.message(1, image_spec(image))
            + pw.message(2, auth.encode() if auth is not None else None))


def encode_image_status_request(image: str) -> bytes:
    """ImageStatusRequest: image = 1 (ImageSpec); verbose (2) stays false."""
    return pw.message(1, image_spec(image))


def encode_remove_image_request(image: str) -> bytes:
    """RemoveImageRequest: image = 1 (ImageSpec)."""
    return pw.message(1, image_spec(image))


def decode_version_response(data: bytes) -> RuntimeVersion:
    values = {1: "", 2: "", 3: "", 4: ""}
    for f in pw.fields(data):
        if f.number in values:
            values[f.number] = pw.as_str(f)
    return RuntimeVersion(values[1], values[2], values[3], values[4])


def decode_pull_image_response(data: bytes) -> str:
    """PullImageResponse: image_ref = 1, the pulled image's id."""
    image_ref = ""
    for f in pw.fields(data):
        if f.number == 1:
            image_ref = pw.as_str(f)
    return image_ref


def decode_image(data: bytes) -> Image:
    image_id, size, pinned = "", 0, False
    tags: list[str] = []
    digests: list[str] = []
    for f in pw.fields(data):
        if f.number == 1:
            image_id = pw.as_str(f)
        elif f.number == 2:
            tags.append(pw.as_str(f))
        elif f.number == 3:
            digests.append(pw.as_str(f))
        elif f.number == 4:
            size = pw.as_int(f)
        elif f.number == 8:
            pinned = bool(pw.as_int(f))
    return Image(image_id, tuple(tags), tuple(digests), size, pinned)


def decode_image_status_response(data: bytes) -> Image | None:
    """ImageStatusResponse: image = 1, unset when the runtime has no such image; info (2)
    is skipped."""
    image: Image | None = None
    for f in pw.fields(data):
        if f.number == 1:
            image = decode_image(pw.as_bytes(f))
    return image


# -- the client --------------------------------------------------------------------------------


class CRIClient:
    """Blocking CRI calls on one unix socket, each with a deadline; ``close()`` when done."""

    def __init__(self, socket: str | Path, *, timeout: float = DEFAULT_TIMEOUT,
                 pull_timeout: float = DEFAULT_PULL_TIMEOUT) -> None:
        self.socket = str(socket)
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        # "unix:" and an absolute path: a relative one would be taken from grpc's own cwd rules.
        self._channel = grpc.insecure_channel(f"unix:{Path(socket).absolute()}")

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CRIClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def version(self) -> RuntimeVersion:
        """RuntimeService/Version: which runtime, which version (also a liveness probe)."""
        return self._call(VERSION, encode_version_request(), decode_version_response,
                          self.timeout)

    def pull_image(self, image: str, auth: AuthConfig | None = None, *,
                   timeout: float | None = None) -> str:
        """ImageService/PullImage as kubelet calls it; returns the image's id (image_ref)."""
        return self._call(PULL_IMAGE, encode_pull_image_request(image, auth),
                          decode_pull_image_response,
                          self.pull_timeout if timeout is None else timeout)

    def image_status(self, image: str) -> Image | None:
        """ImageService/ImageStatus; None when the runtime does not have ``image``."""
        return self._call(IMAGE_STATUS, encode_image_status_request(image),
                          decode_image_status_response, self.timeout)

    def remove_image(self, image: str) -> None:
        """ImageService/RemoveImage; removing an absent image is not an error (per the API)."""
        self._call(REMOVE_IMAGE, encode_remove_image_request(image), lambda _: None,
                   self.timeout)

    def _call(self, method: str, request: bytes, decode: Callable[[bytes], T],
              timeout: float) -> T:
        # The response is decoded here, not by grpcio's response_deserializer: grpcio turns a
        # deserializer's exception into a bare "Exception deserializing response!", losing why.
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            method, request_serializer=None, response_deserializer=None)
        try:
            response: bytes = call(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                details = f"no answer within {timeout:g} s ({details})"
            raise CRIError(method, self.socket, code, details or str(exc)) from None
        try:
            return decode(response)
        except pw.WireError as exc:
            raise CRIError(method, self.socket, None, str(exc)) from None
