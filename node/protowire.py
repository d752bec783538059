"""The protobuf wire format, as much of it as the CRI messages in node/cri.py use.

Protocol Buffers encode a message as a sequence of fields, each a key (field number << 3 | wire
type) followed by a varint or a length-delimited payload. Strings, bytes, nested messages and
map entries are all length-delimited; proto3 omits fields that hold their default value. That is
the whole of what four CRI calls need, so it is written out here instead of depending on
generated code and the protobuf runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VARINT = 0
I64 = 1
LEN = 2
I32 = 5

_MAX_VARINT_BYTES = 10  # a uint64 in 7-bit groups


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a base-128 varint, least significant group first."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """The varint at ``offset`` and the offset just after it."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if offset + i >= len(data):
            raise WireError(f"varint truncated at byte {offset + i}")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, offset + i + 1
    raise WireError(f"varint longer than {_MAX_VARINT_BYTES} bytes at byte {offset}")


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return key(number, LEN) + varint(len(payload)) + payload


def string(number: int, value: str) -> bytes:
    """A string field; empty encodes to nothing, as proto3 omits defaults."""
    return length_delimited(number, value.encode()) if value else b""


def uint(number: int, value: int) -> bytes:
    """A varint field (uint64, bool); zero encodes to nothing."""
    return key(number, VARINT) + varint(value) if value else b""


def message(number: int, payload: bytes | None) -> bytes:
    """A nested message field; None leaves it unset, while b"" sets it (present but empty)."""
    return b"" if payload is None else length_delimited(number, payload)


def string_map(number: int, entries: dict[str, str]) -> bytes:
    """A ``map<string, string>``: one entry message (key = 1, value = 2) per pair."""
    return b"".join(message(number, string(1, k) + string(2, v))
                    for k, v in sorted(entries.items()))


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    wire_type: int
    value: int | bytes  # an int for VARINT, I64 and I32; the payload for LEN


def fields(data: bytes) -> Iterator[Field]:
    """Every field of a message in wire order; unknown fields are the caller's to skip."""
    offset = 0
    while offset < len(data):
        tag, offset = read_varint(data, offset)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {offset}")
        if wire_type == VARINT:
            value, offset = read_varint(data, offset)
            yield Field(number, wire_type, value)
        elif wire_type in (I64, I32):
            size = 8 if wire_type == I64 else 4
            if offset + size > len(data):
                raise WireError(f"field {number}: fixed{size * 8} truncated")
            yield Field(number, wire_type, int.from_bytes(data[offset:offset + size], "little"))
            offset += size
        elif wire_type == LEN:
            size, offset = read_varint(data, offset)
            if offset + size > len(data):
                raise WireError(f"field {number}: {size} bytes announced, "
                                f"{len(data) - offset} left")
            yield Field(number, wire_type, data[offset:offset + size])
            offset += size
        else:  # 3 and 4 are proto2 groups, which no CRI message has; 6 and 7 do not exist
            raise WireError(f"field {number}: unsupported wire type {wire_type}")


def as_bytes(field: Field) -> bytes:
    if field.wire_type != LEN or not isinstance(field.value, bytes):
        raise WireError(f"field {field.number}: wire type {field.wire_type}, expected {LEN}")
    return field.value


def as_str(field: Field) -> str:
    try:
        return as_bytes(field).decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"field {field.number}: not UTF-8: {exc}") from None


def as_int(field: Field) -> int:
    if field.wire_type != VARINT or not isinstance(field.value, int):
        raise WireError(f"field {field.number}: wire type {field.wire_type}, expected {VARINT}")
    return field.value
