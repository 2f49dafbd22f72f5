"""Sans-IO codec for Kafka requests and responses (bytes in, message objects out, and back).

The generated classes in `messages.py` describe their fields in a `FIELDS` table. For each
(class, version) pair actually used, this module compiles the table into one straight-line Python
function (decode or encode) with nested structs inlined and adjacent fixed-width fields packed by a
single `struct.Struct`; the functions are cached, so the table is interpreted once per pair.

Value conventions:
- `uuid` fields decode to `uuid.UUID` (default `schema.ZERO_UUID`); the encoder takes a UUID or
  16 raw bytes.
- `records` fields decode to a zero-copy `memoryview` into the frame, or None. The frame must stay
  unmodified while the request is in use (don't hand in a view of a buffer you will reuse).
  The encoder takes bytes, bytearray, a byte memoryview, a list/tuple of such chunks (so a Fetch
  response is built without concatenating batches first), or None.
- `bytes` fields decode to `bytes`; arrays decode to lists; absent (older-version) and missing
  tagged fields take the spec default.
- Bytes after the end of a message body are ignored, as Kafka brokers do.

Frames passed to `decode_request` / `decode_response` exclude the 4-byte size prefix; the
`encode_*` functions include it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any
from uuid import UUID

from appliance.errors import MillstreamError, ProtocolError
from appliance.kafka.protocol.messages import API_KEYS, RequestHeader
from appliance.kafka.protocol.schema import DEFAULT, ApiMessages, Field, Message

API_VERSIONS_KEY = 18


class UnsupportedVersionError(ProtocolError):
    """The API key is unknown or the version is outside what the generated classes cover.

    The adapter answers an ApiVersions request with error 35 (v0 format) and closes the
    connection for any other API. `correlation_id` is None when it was never read.
    """

    kafka_code = 35  # UNSUPPORTED_VERSION

    def __init__(self, api_key: int | None, api_version: int, correlation_id: int | None = None) -> None:
        super().__init__(f"unsupported api_key={api_key} api_version={api_version}")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class MalformedMessageError(ProtocolError):
    """Bytes that do not decode as the expected message (truncated, bad lengths, bad UTF-8)."""

    kafka_code = 42  # INVALID_REQUEST

    def __init__(
        self,
        problem: str,
        api_key: int | None = None,
        api_version: int | None = None,
        correlation_id: int | None = None,
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class MalformedRequestError(MalformedMessageError):
    """A request frame that does not decode; `correlation_id` is set when the header was read."""


class MalformedResponseError(MalformedMessageError):
    """A response frame that does not decode (client side)."""


class EncodeError(MillstreamError, ValueError):
    """A message object holds a value its schema cannot encode at this version (a caller bug)."""


class _Bad(Exception):
    """Internal: structural problem found while decoding; wrapped into MalformedMessageError."""


_new_object = object.__new__
_DECODE_ERRORS = (struct.error, IndexError, ValueError, TypeError, OverflowError, _Bad)
_ENCODE_ERRORS = (struct.error, TypeError, AttributeError, ValueError, OverflowError)

_FIXED = {
    "int8": "b", "int16": "h", "int32": "i", "int64": "q",
    "uint16": "H", "uint32": "I", "float64": "d", "bool": "?",
}
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_HEADER = struct.Struct(">hhi")
_NULL = {2: b"\xff\xff", 4: b"\xff\xff\xff\xff"}
_UVARINT_1 = tuple(bytes((i,)) for i in range(128))


def _uvarint_bytes(value: int) -> bytes:
    if value < 128:
        return _UVARINT_1[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise _Bad("unsigned varint longer than 5 bytes")


def _uuid_bytes(value: Any) -> bytes:
    if type(value) is UUID:
        return value.bytes
    raw = bytes(value)
    if len(raw) != 16:
        raise ValueError(f"uuid must be a UUID or 16 bytes, got {len(raw)} bytes")
    return raw


def _tag_buffer(tagged: list[tuple[int, bytes]]) -> bytes:
    out = [_uvarint_bytes(len(tagged))]
    for tag, data in tagged:
        out.append(_uvarint_bytes(tag))
        out.append(_uvarint_bytes(len(data)))
        out.append(data)
    return b"".join(out)


def _read_tags(buf: Any, mv: memoryview, pos: int, count: int, obj: Any, known: dict, blen: int) -> int:
    for _ in range(count):
        tag, pos = _read_uvarint(buf, pos)
        size, pos = _read_uvarint(buf, pos)
        end = pos + size
        if end > blen:
            raise _Bad("tagged field runs past the end")
        entry = known.get(tag)
        if entry is not None:
            value, stop = entry[1](buf, mv, pos, end)
            if stop != end:
                raise _Bad(f"tagged field {entry[0]} has a wrong size")
            setattr(obj, entry[0], value)
        pos = end
    return pos


def _skip_tags(buf: Any, pos: int, blen: int) -> int:
    count, pos = _read_uvarint(buf, pos)
    return _read_tags(buf, None, pos, count, None, {}, blen)


def _records_len(value: Any) -> int:
    return sum(map(len, value))


_NS_BASE: dict[str, Any] = {
    "_new": object.__new__, "_Bad": _Bad, "_UUID": UUID, "_uvar": _read_uvarint, "_uvb": _uvarint_bytes,
    "_uuidb": _uuid_bytes, "_tagbuf": _tag_buffer, "_rtags": _read_tags, "_I8": _I8, "_I16": _I16,
    "_I32": _I32, "_unpack": struct.unpack_from, "_pack": struct.pack, "_rlen": _records_len,
    "_list": list, "_tuple": tuple, "_UV1": _UVARINT_1, "_type": type,
}


def _in(r: tuple[int, int] | None, v: int) -> bool:
    return r is not None and r[0] <= v <= r[1]


class _Compiler:
    """Emits the source of one function; constants live in its namespace under generated names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns = dict(_NS_BASE)
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value: Any, prefix: str = "k") -> str:
        if value is None or isinstance(value, (bool, int, float, str, bytes)):
            return repr(value)
        name = self.name(prefix)
        self.ns[name] = value
        return name

    def emit(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    def function(self, name: str, args: str, label: str) -> Callable:
        src = f"def {name}({args}):\n" + "\n".join(self.lines)
        exec(compile(src, f"<kafka codec {label}>", "exec"), self.ns)
        return self.ns[name]

    # ---- helpers shared by both directions ----------------------------------------------
    def default_expr(self, f: Field) -> str:
        if f.default is DEFAULT:
            return "[]" if f.type.startswith("[]") else f"{self.const(f.struct, 'C')}()"
        return self.const(f.default)

    @staticmethod
    def layout(cls: type[Message], v: int, flex: bool) -> tuple[list[Field], list[Field]]:
        """(fields encoded in order, tagged fields sorted by tag) at version v."""
        plain, tagged = [], []
        for f in cls.FIELDS:
            if not _in(f.versions, v):
                continue
            if flex and _in(f.tagged, v):
                tagged.append(f)
            else:
                plain.append(f)
        tagged.sort(key=lambda f: f.tag)
        return plain, tagged

    @staticmethod
    def compact(f: Field, v: int, flex: bool) -> bool:
        return flex and (f.flexible is None or _in(f.flexible, v))


class _DecodeCompiler(_Compiler):
    def struct(self, cls: type[Message], v: int, flex: bool, target: str, ind: int) -> None:
        self.emit(ind, f"{target} = _new({self.const(cls, 'C')})")
        plain, tagged = self.layout(cls, v, flex)
        direct = {id(f) for f in plain}
        for f in cls.FIELDS:
            if id(f) not in direct:
                self.emit(ind, f"{target}.{f.name} = {self.default_expr(f)}")
        run: list[Field] = []
        for f in plain:
            if f.type in _FIXED:
                run.append(f)
                continue
            self.fixed_run(run, target, ind)
            run = []
            self.field(f, f.type, v, flex, f"{target}.{f.name}", ind)
        self.fixed_run(run, target, ind)
        if flex:
            known = {f.tag: (f.name, _compile_tag_decoder(f, v)) for f in tagged}
            nt = self.name("nt")
            self.emit(ind, f"{nt} = buf[pos]")
            self.emit(ind, "pos += 1")
            self.emit(ind, f"if {nt}:")
            self.emit(ind + 1, f"if {nt} > 127: {nt}, pos = _uvar(buf, pos - 1)")
            self.emit(ind + 1, f"pos = _rtags(buf, mv, pos, {nt}, {target}, {self.const(known, 'T')}, blen)")

    def fixed_run(self, run: list[Field], target: str, ind: int) -> None:
        if not run:
            return
        s = struct.Struct(">" + "".join(_FIXED[f.type] for f in run))
        dests = ", ".join(f"{target}.{f.name}" for f in run)
        self.emit(ind, f"{dests}, = {self.const(s, 'S')}.unpack_from(buf, pos)")
        self.emit(ind, f"pos += {s.size}")

    def length(self, compact: bool, width: int, var: str, ind: int) -> None:
        """Read a length into var: -1 means null (compact lengths are stored + 1)."""
        if compact:
            self.emit(ind, f"{var} = buf[pos]")
            self.emit(ind, "pos += 1")
            self.emit(ind, f"if {var} > 127: {var}, pos = _uvar(buf, pos - 1)")
            self.emit(ind, f"{var} -= 1")
        else:
            packer = "_I16" if width == 2 else "_I32"
            self.emit(ind, f"{var}, = {packer}.unpack_from(buf, pos)")
            self.emit(ind, f"pos += {width}")

    def null_or(self, nullable: bool, var: str, dest: str, what: str, ind: int) -> None:
        self.emit(ind, f"if {var} < 0:")
        if nullable:
            self.emit(ind + 1, f"{dest} = None")
        else:
            self.emit(ind + 1, f"raise _Bad('null {what}')")

    def field(self, f: Field, typ: str, v: int, flex: bool, dest: str, ind: int) -> None:
        nullable = _in(f.nullable, v)
        compact = self.compact(f, v, flex)
        if typ in _FIXED:
            s = struct.Struct(">" + _FIXED[typ])
            self.emit(ind, f"{dest}, = {self.const(s, 'S')}.unpack_from(buf, pos)")
            self.emit(ind, f"pos += {s.size}")
        elif typ in ("string", "bytes", "records"):
            n = self.name("n")
            self.length(compact, 2 if typ == "string" else 4, n, ind)
            self.null_or(nullable, n, dest, f"{typ} {f.name}", ind)
            self.emit(ind, "else:")
            self.emit(ind + 1, f"end = pos + {n}")
            self.emit(ind + 1, f"if end > blen: raise _Bad('{typ} {f.name} runs past the end')")
            value = {"string": "str(buf[pos:end], 'utf-8')", "bytes": "bytes(buf[pos:end])",
                     "records": "mv[pos:end]"}[typ]
            self.emit(ind + 1, f"{dest} = {value}")
            self.emit(ind + 1, "pos = end")
        elif typ == "uuid":
            self.emit(ind, "end = pos + 16")
            self.emit(ind, f"if end > blen: raise _Bad('uuid {f.name} runs past the end')")
            self.emit(ind, f"{dest} = _UUID(bytes=bytes(buf[pos:end]))")
            self.emit(ind, "pos = end")
        elif typ.startswith("[]"):
            elem = typ[2:]
            n = self.name("n")
            self.length(compact, 4, n, ind)
            self.null_or(nullable, n, dest, f"array {f.name}", ind)
            self.emit(ind, f"elif {n} > blen - pos: raise _Bad('array {f.name} longer than the frame')")
            self.emit(ind, "else:")
            if elem in _FIXED:
                size = struct.calcsize(">" + _FIXED[elem])
                self.emit(ind + 1, f"{dest} = _list(_unpack('>%d{_FIXED[elem]}' % {n}, buf, pos))")
                self.emit(ind + 1, f"pos += {n} * {size}")
            else:
                lst, e = self.name("l"), self.name("e")
                self.emit(ind + 1, f"{lst} = []")
                self.emit(ind + 1, f"for _ in range({n}):")
                if f.struct is not None:
                    self.struct(f.struct, v, flex, e, ind + 2)
                else:
                    self.field(f._replace(nullable=None), elem, v, flex, e, ind + 2)
                self.emit(ind + 2, f"{lst}.append({e})")
                self.emit(ind + 1, f"{dest} = {lst}")
        elif f.struct is not None:
            s = self.name("s")
            if nullable:
                self.emit(ind, "pos += 1")
                self.emit(ind, "if buf[pos - 1] == 255:")
                self.emit(ind + 1, f"{dest} = None")
                self.emit(ind, "else:")
                ind += 1
            self.struct(f.struct, v, flex, s, ind)
            self.emit(ind, f"{dest} = {s}")
        else:
            raise TypeError(f"unknown field type {typ}")


class _EncodeCompiler(_Compiler):
    def struct(self, cls: type[Message], v: int, flex: bool, src: str, ind: int) -> None:
        plain, tagged = self.layout(cls, v, flex)
        run: list[Field] = []
        for f in plain:
            if f.type in _FIXED:
                run.append(f)
                continue
            self.fixed_run(run, src, ind)
            run = []
            self.field(f, f.type, v, flex, f"{src}.{f.name}", ind)
        self.fixed_run(run, src, ind)
        if not flex:
            return
        if not tagged:
            self.emit(ind, "ap(b'\\x00')")
            return
        tg = self.name("tg")
        self.emit(ind, f"{tg} = []")
        for f in tagged:
            default = self.const(_comparison_default(f), "D")
            encoder = self.const(_compile_tag_encoder(f, v), "E")
            self.emit(ind, f"if {self.differs(f, f'{src}.{f.name}', default)}:")
            self.emit(ind + 1, f"{tg}.append(({f.tag}, {encoder}({src}.{f.name})))")
        self.emit(ind, f"ap(_tagbuf({tg}) if {tg} else b'\\x00')")

    def differs(self, f: Field, expr: str, default: str) -> str:
        """Python test for "value differs from the spec default"; structs compared field by field."""
        if f.default is not DEFAULT or f.type.startswith("[]"):
            return f"{expr} != {default}"
        proto = self.ns[default]
        values = [getattr(proto, name) for name in proto.__slots__]
        if not all(v is None or isinstance(v, (bool, int, float, str, bytes)) for v in values):
            return f"{expr} != {default}"
        tests = [f"_type({expr}) is not {self.const(f.struct, 'C')}"]
        tests += [f"{expr}.{name} != {value!r}" for name, value in zip(proto.__slots__, values, strict=True)]
        return " or ".join(tests)

    def fixed_run(self, run: list[Field], src: str, ind: int) -> None:
        if not run:
            return
        s = struct.Struct(">" + "".join(_FIXED[f.type] for f in run))
        values = ", ".join(f"{src}.{f.name}" for f in run)
        self.emit(ind, f"ap({self.const(s, 'S')}.pack({values}))")

    def length(self, compact: bool, width: int, expr: str, ind: int) -> None:
        if compact:
            n = self.name("m")
            self.emit(ind, f"{n} = {expr} + 1")
            self.emit(ind, f"ap(_UV1[{n}] if {n} < 128 else _uvb({n}))")
        else:
            self.emit(ind, f"ap({'_I16' if width == 2 else '_I32'}.pack({expr}))")

    def null(self, compact: bool, width: int, ind: int) -> None:
        self.emit(ind, "ap(b'\\x00')" if compact else f"ap({_NULL[width]!r})")

    def field(self, f: Field, typ: str, v: int, flex: bool, src: str, ind: int) -> None:
        nullable = _in(f.nullable, v)
        compact = self.compact(f, v, flex)
        if typ in _FIXED:
            s = struct.Struct(">" + _FIXED[typ])
            self.emit(ind, f"ap({self.const(s, 'S')}.pack({src}))")
            return
        if typ == "uuid":
            self.emit(ind, f"ap(_uuidb({src}))")
            return
        x = self.name("x")
        self.emit(ind, f"{x} = {src}")
        if nullable:
            self.emit(ind, f"if {x} is None:")
            if f.struct is not None and not typ.startswith("[]"):
                self.emit(ind + 1, "ap(b'\\xff')")
            else:
                self.null(compact, 2 if typ == "string" else 4, ind + 1)
            self.emit(ind, "else:")
            ind += 1
        elif f.struct is None or typ.startswith("[]"):
            self.emit(ind, f"if {x} is None: raise TypeError('{f.name} is not nullable at v{v}')")
        if typ == "string":
            self.emit(ind, f"{x} = {x}.encode('utf-8')")
            self.length(compact, 2, f"len({x})", ind)
            self.emit(ind, f"ap({x})")
        elif typ == "bytes":
            self.length(compact, 4, f"len({x})", ind)
            self.emit(ind, f"ap({x})")
        elif typ == "records":
            self.emit(ind, f"if type({x}) is _list or type({x}) is _tuple:")
            self.length(compact, 4, f"_rlen({x})", ind + 1)
            self.emit(ind + 1, f"parts.extend({x})")
            self.emit(ind, "else:")
            self.length(compact, 4, f"len({x})", ind + 1)
            self.emit(ind + 1, f"ap({x})")
        elif typ.startswith("[]"):
            elem = typ[2:]
            self.length(compact, 4, f"len({x})", ind)
            if elem in _FIXED:
                self.emit(ind, f"ap(_pack('>%d{_FIXED[elem]}' % len({x}), *{x}))")
            else:
                e = self.name("e")
                self.emit(ind, f"for {e} in {x}:")
                if f.struct is not None:
                    self.struct(f.struct, v, flex, e, ind + 1)
                else:
                    self.field(f._replace(nullable=None), elem, v, flex, e, ind + 1)
        elif f.struct is not None:
            if nullable:
                self.emit(ind, "ap(b'\\x01')")
            self.struct(f.struct, v, flex, x, ind)
        else:
            raise TypeError(f"unknown field type {typ}")


def _comparison_default(f: Field) -> Any:
    if f.default is DEFAULT:
        return [] if f.type.startswith("[]") else f.struct()
    return f.default


def _compile_tag_decoder(f: Field, v: int) -> Callable:
    c = _DecodeCompiler()
    c.field(f, f.type, v, True, "val", 1)
    c.emit(1, "return val, pos")
    return c.function("tagdec", "buf, mv, pos, blen", f"tag {f.name} v{v}")


def _compile_tag_encoder(f: Field, v: int) -> Callable:
    c = _EncodeCompiler()
    c.emit(1, "parts = []")
    c.emit(1, "ap = parts.append")
    c.field(f, f.type, v, True, "val", 1)
    c.emit(1, "return b''.join(parts)")
    return c.function("tagenc", "val", f"tag {f.name} v{v}")


def _is_flexible(cls: type[Message], version: int) -> bool:
    return cls.FLEXIBLE_MIN is not None and version >= cls.FLEXIBLE_MIN


def _check_version(cls: type[Message], version: int) -> None:
    lo, hi = cls.VERSIONS
    if not lo <= version <= hi:
        raise UnsupportedVersionError(cls.API_KEY, version)


# Compiled functions per (class, version): a memo of pure functions of the schema tables.
_DECODERS: dict[tuple[type, int], Callable] = {}
_ENCODERS: dict[tuple[type, int], Callable] = {}


def _decoder(cls: type[Message], version: int) -> Callable:
    fn = _DECODERS.get((cls, version))
    if fn is None:
        _check_version(cls, version)
        c = _DecodeCompiler()
        c.struct(cls, version, _is_flexible(cls, version), "o", 1)
        c.emit(1, "return o, pos")
        fn = _DECODERS[(cls, version)] = c.function("decode", "buf, mv, pos, blen", f"{cls.NAME} v{version}")
    return fn


def _encoder(cls: type[Message], version: int) -> Callable:
    fn = _ENCODERS.get((cls, version))
    if fn is None:
        _check_version(cls, version)
        c = _EncodeCompiler()
        c.emit(1, "ap = parts.append")
        c.struct(cls, version, _is_flexible(cls, version), "o", 1)
        c.emit(1, "return parts")
        fn = _ENCODERS[(cls, version)] = c.function("encode", "o, parts", f"{cls.NAME} v{version}")
    return fn


def _encode_into(obj: Message, version: int, parts: list, prefixed: bool = False) -> list:
    """Append the body chunks to parts; with prefixed, parts[0] becomes the 4-byte frame size."""
    cls = type(obj)
    enc = _encoder(cls, version)
    try:
        enc(obj, parts)
        if prefixed:
            parts[0] = _I32.pack(sum(map(len, parts)))
        return parts
    except _ENCODE_ERRORS as e:
        raise EncodeError(f"cannot encode {cls.__qualname__} v{version}: {e}") from e


def _join(parts: list, obj: Message, version: int) -> bytes:
    try:
        return b"".join(parts)
    except TypeError as e:  # a str (or other non-buffer) where bytes were expected
        raise EncodeError(f"cannot encode {type(obj).__qualname__} v{version}: {e}") from e


# ---- public API ---------------------------------------------------------------------------

def encode(obj: Message, version: int) -> bytes:
    """Body bytes of a message (no header, no size prefix)."""
    return _join(_encode_into(obj, version, []), obj, version)


def decode(cls: type[Message], version: int, data: bytes | bytearray | memoryview) -> Any:
    """Decode a body of message class `cls` at `version`; raises MalformedMessageError."""
    mv = data if type(data) is memoryview else memoryview(data)
    dec = _decoder(cls, version)
    try:
        return dec(data, mv, 0, len(mv))[0]
    except _DECODE_ERRORS as e:
        raise MalformedMessageError(f"{cls.NAME} v{version}: {_describe(e)}", cls.API_KEY, version) from e


def _describe(e: Exception) -> str:
    if isinstance(e, (IndexError, struct.error)):
        return f"truncated ({e})"
    return str(e)


def api(api_key: int) -> ApiMessages:
    """The registry entry for a key; raises UnsupportedVersionError for unknown keys."""
    entry = API_KEYS.get(api_key)
    if entry is None:
        raise UnsupportedVersionError(api_key, -1)
    return entry


def is_flexible(api_key: int, api_version: int) -> bool:
    entry = api(api_key)
    return entry.flexible_min is not None and api_version >= entry.flexible_min


def request_header_version(api_key: int, api_version: int) -> int:
    return 2 if is_flexible(api_key, api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    # ApiVersions responses always use header v0 so a client can parse them before it knows
    # which versions the broker speaks.
    if api_key == API_VERSIONS_KEY:
        return 0
    return 1 if is_flexible(api_key, api_version) else 0


def peek_header(frame: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) of a request frame, without decoding the body."""
    if len(frame) < 8:
        raise MalformedRequestError("frame shorter than a request header")
    return _HEADER.unpack_from(frame, 0)


def decode_request(frame: bytes | bytearray | memoryview) -> tuple[RequestHeader, Any]:
    """Decode a request frame (without its size prefix) into (header, request object)."""
    buf = frame  # strings decode from the original bytes (faster); records are views into mv
    mv = frame if type(frame) is memoryview else memoryview(frame)
    blen = len(mv)
    api_key, api_version, correlation_id = peek_header(frame)
    entry = API_KEYS.get(api_key)
    if entry is None or not entry.min_version <= api_version <= entry.max_version:
        raise UnsupportedVersionError(api_key, api_version, correlation_id)
    flexible = entry.flexible_min is not None and api_version >= entry.flexible_min
    dec = _decoder(entry.request, api_version)
    try:
        (n,) = _I16.unpack_from(buf, 8)
        pos = 10
        if n < 0:
            client_id = None
        else:
            pos += n
            if pos > blen:
                raise _Bad("client_id runs past the end")
            client_id = str(buf[10:pos], "utf-8")
        if flexible:
            if buf[pos]:
                pos = _skip_tags(buf, pos, blen)
            else:
                pos += 1
        request = dec(buf, mv, pos, blen)[0]
    except _DECODE_ERRORS as e:
        raise MalformedRequestError(
            f"{entry.request.NAME} v{api_version}: {_describe(e)}", api_key, api_version, correlation_id
        ) from e
    header = _new_object(RequestHeader)  # skips keyword parsing: this runs for every request
    header.request_api_key = api_key
    header.request_api_version = api_version
    header.correlation_id = correlation_id
    header.client_id = client_id
    return header, request


def _response_parts(api_key: int, api_version: int, correlation_id: int, response: Message) -> list:
    entry = api(api_key)
    if type(response) is not entry.response:
        raise EncodeError(f"{type(response).__qualname__} is not the response of api_key {api_key}")
    header = _I32.pack(correlation_id)
    if response_header_version(api_key, api_version) == 1:
        header += b"\x00"
    return _encode_into(response, api_version, [b"", header], prefixed=True)


def encode_response(api_key: int, api_version: int, correlation_id: int, response: Message) -> bytes:
    """A complete response frame, 4-byte size prefix included."""
    return _join(_response_parts(api_key, api_version, correlation_id, response), response, api_version)


def encode_response_parts(
    api_key: int, api_version: int, correlation_id: int, response: Message
) -> list[bytes | memoryview]:
    """Like encode_response, as a list of chunks (record batches not copied) for vectored sends."""
    return _response_parts(api_key, api_version, correlation_id, response)


def encode_request(
    api_key: int, api_version: int, correlation_id: int, request: Message, client_id: str | None = "millstream"
) -> bytes:
    """A complete request frame (size prefix, header v1 or v2, body)."""
    entry = api(api_key)
    if type(request) is not entry.request:
        raise EncodeError(f"{type(request).__qualname__} is not the request of api_key {api_key}")
    if not entry.min_version <= api_version <= entry.max_version:
        raise UnsupportedVersionError(api_key, api_version, correlation_id)
    header = [_HEADER.pack(api_key, api_version, correlation_id)]
    if client_id is None:
        header.append(b"\xff\xff")
    else:
        raw = client_id.encode("utf-8")
        header.append(_I16.pack(len(raw)))
        header.append(raw)
    if is_flexible(api_key, api_version):
        header.append(b"\x00")
    return _join(_encode_into(request, api_version, [b"", *header], prefixed=True), request, api_version)


def decode_response(api_key: int, api_version: int, frame: bytes | bytearray | memoryview) -> tuple[int, Any]:
    """Decode a response frame (without size prefix) into (correlation_id, response object)."""
    entry = api(api_key)
    buf = frame
    mv = frame if type(frame) is memoryview else memoryview(frame)
    blen = len(mv)
    dec = _decoder(entry.response, api_version)
    correlation_id = None
    try:
        (correlation_id,) = _I32.unpack_from(buf, 0)
        pos = 4
        if response_header_version(api_key, api_version) == 1:
            pos = _skip_tags(buf, pos, blen)
        return correlation_id, dec(buf, mv, pos, blen)[0]
    except _DECODE_ERRORS as e:
        raise MalformedResponseError(
            f"{entry.response.NAME} v{api_version}: {_describe(e)}", api_key, api_version, correlation_id
        ) from e
