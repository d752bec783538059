"""The CRI client's wire format, pinned byte for byte, and its errors against a real gRPC server.

The golden bytes were checked once against the protobuf runtime serialising the same messages
from api.proto's field numbers; here they are spelled out so that a changed field number shows.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import cri
from node import protowire as pw

IMAGE = "docker.io/library/demo:single"
IMAGE_BYTES = IMAGE.encode()  # 29 bytes: 0x1d


# -- protowire ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (2**64 - 1, b"\xff" * 9 + b"\x01")])
def test_varint_known_bytes(value: int, encoded: bytes) -> None:
    assert pw.varint(value) == encoded
    assert pw.read_varint(encoded, 0) == (value, len(encoded))


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trip(value: int) -> None:
    assert pw.read_varint(b"x" + pw.varint(value), 1) == (value, 1 + len(pw.varint(value)))


def test_varint_range_and_truncation() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pw.varint(2**64)
    with pytest.raises(pw.WireError, match="truncated"):
        pw.read_varint(b"\x80\x80", 0)
    with pytest.raises(pw.WireError, match="longer than 10"):
        pw.read_varint(b"\xff" * 11, 0)


def test_fields_skip_every_wire_type_and_reject_bad_input() -> None:
    data = b"\x08\x96\x01" + b"\x11" + bytes(8) + b"\x1a\x02hi" + b"\x25" + b"\x01\x00\x00\x00"
    assert [(f.number, f.wire_type, f.value) for f in pw.fields(data)] == [
        (1, pw.VARINT, 150), (2, pw.I64, 0), (3, pw.LEN, b"hi"), (4, pw.I32, 1)]
    with pytest.raises(pw.WireError, match="3 bytes announced, 2 left"):
        list(pw.fields(b"\x0a\x03hi"))
    with pytest.raises(pw.WireError, match="wire type 3"):
        list(pw.fields(b"\x0b"))
    with pytest.raises(pw.WireError, match="field number 0"):
        list(pw.fields(b"\x00\x00"))
    with pytest.raises(pw.WireError, match="expected 2"):
        pw.as_str(pw.Field(1, pw.VARINT, 5))


def test_proto3_defaults_are_omitted_and_maps_are_entry_messages() -> None:
    assert pw.string(1, "") == b""
    assert pw.uint(4, 0) == b""
    assert pw.message(2, None) == b""
    assert pw.message(2, b"") == b"\x12\x00"  # an empty message that is set is still sent
    assert pw.string_map(2, {"b": "2", "a": "1"}) == (b"\x12\x06\x0a\x01a\x12\x011"
                                                      b"\x12\x06\x0a\x01b\x12\x012")


# -- CRI messages ------------------------------------------------------------------------------


def test_version_request_bytes() -> None:
    assert cri.encode_version_request() == b"\x0a\x050.1.0"


def test_pull_image_request_bytes() -> None:
    spec = b"\x0a\x1d" + IMAGE_BYTES  # ImageSpec{image = 1}
    assert cri.encode_pull_image_request(IMAGE) == b"\x0a\x1f" + spec
    auth = cri.AuthConfig(username="u", password="p", server_address="docker.io")
    # auth = 2: AuthConfig{username = 1, password = 2, server_address = 4}
    assert cri.encode_pull_image_request(IMAGE, auth) == (
        b"\x0a\x1f" + spec + b"\x12\x11" + b"\x0a\x01u" + b"\x12\x01p" + b"\x22\x09docker.io")


def test_auth_secrets_stay_out_of_repr() -> None:
    auth = cri.AuthConfig(username="u", password="hunter2", auth="c2VjcmV0",
                          identity_token="tok1", registry_token="tok2")
    assert not {"hunter2", "c2VjcmV0", "tok1", "tok2"} & set(repr(auth).replace("'", " ").split())


def test_image_status_and_remove_requests_carry_the_spec() -> None:
    expected = b"\x0a\x1f\x0a\x1d" + IMAGE_BYTES
    assert cri.encode_image_status_request(IMAGE) == expected
    assert cri.encode_remove_image_request(IMAGE) == expected


def test_version_response_decodes() -> None:
    data = b'\x0a\x050.1.0\x12\x0acontainerd\x1a\x06v2.2.7"\x02v1'
    assert cri.decode_version_response(data) == cri.RuntimeVersion(
        "0.1.0", "containerd", "v2.2.7", "v1")


def test_image_status_response_decodes_and_skips_unknown_fields() -> None:
    config = "sha256:" + "a" * 64
    digest = "docker.io/library/demo@sha256:" + "b" * 64
    image = (b"\x0a\x47" + config.encode() + b"\x12\x1d" + IMAGE_BYTES
             + b"\x1a\x5e" + digest.encode() + b"\x20\xe0\xa7\x12"  # size = 4: 300000
             + b"\x2a\x02\x08\x00"  # uid = 5 (Int64Value), skipped
             + b"\x32\x04root"  # username = 6, skipped
             + b"\x40\x01")  # pinned = 8
    info = b"\x12\x09\x0a\x03key\x12\x02{}"  # info = 2: one map entry, skipped
    status = cri.decode_image_status_response(b"\x0a" + pw.varint(len(image)) + image + info)
    assert status == cri.Image(config, (IMAGE,), (digest,), 300000, pinned=True)


def test_absent_image_is_none() -> None:
    assert cri.decode_image_status_response(b"") is None


def test_pull_image_response_decodes() -> None:
    assert cri.decode_pull_image_response(b"\x0a\x0bsha256:abcd") == "sha256:abcd"


# -- the client against a gRPC server ----------------------------------------------------------

Handler = Callable[[bytes, grpc.ServicerContext], bytes]
Serve = Callable[[dict[str, Handler]], tuple[Path, "FakeRuntime"]]


class FakeRuntime(grpc.GenericRpcHandler):
    """A CRI server whose methods are test functions on raw bytes; records what it was sent."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.received: list[tuple[str, bytes]] = []

    def service(self, handler_call_details: grpc.HandlerCallDetails
                ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = handler_call_details.method
        handler = self.handlers.get(method)
        if handler is None:
            return None

        def behaviour(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.received.append((method, request))
            return handler(request, context)

        return grpc.unary_unary_rpc_method_handler(behaviour)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # A short path: a unix socket's name has to fit in 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="rf-cri-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def serve(socket_dir: Path) -> Iterator[Serve]:
    """Start an in-process gRPC server with these handlers on a unix socket; stopped after."""
    servers: list[grpc.Server] = []

    def start(handlers: dict[str, Handler]) -> tuple[Path, FakeRuntime]:
        runtime = FakeRuntime(handlers)
        server = grpc.server(ThreadPoolExecutor(max_workers=2), handlers=[runtime])
        socket = socket_dir / f"cri-{len(servers)}.sock"
        server.add_insecure_port(f"unix:{socket}")
        server.start()
        servers.append(server)
        return socket, runtime

    yield start
    for server in servers:
        server.stop(grace=None)


def test_calls_send_the_encoded_requests_on_the_method_paths(serve: Serve) -> None:
    image = b"\x0a\x02id" + b"\x1a\x05n@s:1"
    socket, runtime = serve({
        cri.VERSION: lambda req, ctx: b"\x12\x0acontainerd",
        cri.PULL_IMAGE: lambda req, ctx: b"\x0a\x02id",
        cri.IMAGE_STATUS: lambda req, ctx: b"\x0a" + bytes([len(image)]) + image,
        cri.REMOVE_IMAGE: lambda req, ctx: b"",
    })
    with cri.CRIClient(socket) as client:
        assert client.version().runtime_name == "containerd"
        assert client.pull_image(IMAGE) == "id"
        assert client.image_status(IMAGE) == cri.Image("id", (), ("n@s:1",), 0)
        client.remove_image(IMAGE)
    assert runtime.received == [
        (cri.VERSION, cri.encode_version_request()),
        (cri.PULL_IMAGE, cri.encode_pull_image_request(IMAGE)),
        (cri.IMAGE_STATUS, cri.encode_image_status_request(IMAGE)),
        (cri.REMOVE_IMAGE, cri.encode_remove_image_request(IMAGE)),
    ]


def test_runtime_error_names_method_socket_and_details(serve: Serve) -> None:
    def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.UNKNOWN, 'failed to pull and unpack image "x": 404')

    socket, _ = serve({cri.PULL_IMAGE: refuse})
    with cri.CRIClient(socket) as client, pytest.raises(cri.CRIError) as caught:
        client.pull_image(IMAGE)
    error = caught.value
    assert (error.method, error.socket, error.code) == (
        cri.PULL_IMAGE, str(socket), grpc.StatusCode.UNKNOWN)
    assert str(error) == (f"CRI {cri.PULL_IMAGE} on {socket}: UNKNOWN: "
                          'failed to pull and unpack image "x": 404')


def test_unimplemented_method_and_missing_socket(serve: Serve, socket_dir: Path) -> None:
    socket, _ = serve({})  # a gRPC server without the CRI: containerd with the plugin disabled
    with cri.CRIClient(socket) as client, pytest.raises(cri.CRIError) as caught:
        client.version()
    assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
    with cri.CRIClient(socket_dir / "absent.sock") as client, pytest.raises(cri.CRIError) as caught:
        client.image_status(IMAGE)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "absent.sock" in str(caught.value)


def test_every_call_has_a_deadline(serve: Serve) -> None:
    release = threading.Event()

    def hang(request: bytes, context: grpc.ServicerContext) -> bytes:
        release.wait(5)
        return b""

    socket, _ = serve({cri.IMAGE_STATUS: hang, cri.PULL_IMAGE: hang})
    try:
        with cri.CRIClient(socket, timeout=0.2, pull_timeout=0.3) as client:
            calls: list[tuple[Callable[[], object], str]] = [
                (lambda: client.image_status(IMAGE), "0.2"),
                (lambda: client.pull_image(IMAGE), "0.3")]
            for call, seconds in calls:
                started = time.monotonic()
                with pytest.raises(cri.CRIError, match=f"DEADLINE_EXCEEDED: no answer within "
                                                       f"{seconds} s"):
                    call()
                assert time.monotonic() - started < 2
    finally:
        release.set()


def test_malformed_response_is_a_clear_error(serve: Serve) -> None:
    socket, _ = serve({cri.IMAGE_STATUS: lambda req, ctx: b"\x0a\x05ab"})
    with cri.CRIClient(socket) as client, pytest.raises(cri.CRIError) as caught:
        client.image_status(IMAGE)
    assert caught.value.code is None
    assert str(caught.value) == (f"CRI {cri.IMAGE_STATUS} on {socket}: bad response: "
                                 "field 1: 5 bytes announced, 2 left")
