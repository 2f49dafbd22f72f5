#!/usr/bin/env python3
"""Generate appliance/kafka/protocol/messages.py from Kafka's JSON message specs.

Specs are read from `<repo>/../shared/kafka-protocol/message-specs` unless the environment
variable MILLSTREAM_KAFKA_SPECS names another directory. The output is deterministic, so a test
can regenerate it in memory and compare it with the committed file.

Usage: python packaging/gen_kafka_protocol.py [--check]
"""

from __future__ import annotations

import json
import keyword
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "appliance" / "kafka" / "protocol" / "messages.py"
MAX_VERSION = 0x7FFF

# The APIs the broker may serve or the uplink may call; request + response are generated for each.
APIS = (
    "Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch", "FindCoordinator",
    "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup", "DescribeGroups", "ListGroups",
    "SaslHandshake", "SaslAuthenticate", "ApiVersions", "CreateTopics", "DeleteTopics",
    "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch", "AddPartitionsToTxn",
    "AddOffsetsToTxn", "EndTxn", "TxnOffsetCommit", "DescribeConfigs", "AlterConfigs",
    "IncrementalAlterConfigs", "CreatePartitions", "DeleteGroups", "OffsetDelete",
    "DescribeCluster", "DescribeProducers", "DescribeLogDirs", "ElectLeaders",
    "DescribeTopicPartitions", "ListTransactions", "DescribeTransactions",
)
# Standalone messages: headers and the consumer protocol's embedded subscription/assignment.
EXTRA = ("RequestHeader", "ResponseHeader", "ConsumerProtocolSubscription", "ConsumerProtocolAssignment")

PRIMITIVE_DEFAULTS = {
    "int8": 0, "int16": 0, "int32": 0, "int64": 0, "uint16": 0, "uint32": 0,
    "float64": 0.0, "bool": False, "string": "", "bytes": b"", "records": None, "uuid": "ZERO_UUID",
}
PY_TYPES = {
    "int8": "int", "int16": "int", "int32": "int", "int64": "int", "uint16": "int", "uint32": "int",
    "float64": "float", "bool": "bool", "string": "str", "bytes": "bytes", "uuid": "uuid.UUID",
    "records": "bytes | memoryview | list[bytes]",
}


def default_specs_dir() -> Path:
    env = os.environ.get("MILLSTREAM_KAFKA_SPECS")
    return Path(env) if env else REPO.parent / "shared" / "kafka-protocol" / "message-specs"


def strip_comments(text: str) -> str:
    """Remove // comments outside JSON strings."""
    out = []
    i, n = 0, len(text)
    in_str = False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif c == "/" and text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def load_spec(specs: Path, name: str) -> dict:
    path = specs / f"{name}.json"
    return json.loads(strip_comments(path.read_text(encoding="utf-8")))


def parse_versions(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    text = str(text).strip()
    if text == "none":
        return (0, -1)
    if text.endswith("+"):
        return (int(text[:-1]), MAX_VERSION)
    if "-" in text:
        lo, hi = text.split("-")
        return (int(lo), int(hi))
    return (int(text), int(text))


def snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return s + "_" if keyword.iskeyword(s) else s


def overlaps(a: tuple[int, int] | None, b: tuple[int, int]) -> bool:
    return a is not None and a[0] <= b[1] and b[0] <= a[1] and a[0] <= a[1]


class Struct:
    def __init__(self, name: str, fields: list[dict], path: str) -> None:
        self.name = name
        self.raw_fields = fields
        self.path = path  # dotted path from the module, e.g. ProduceRequest.TopicProduceData
        self.children: list[Struct] = []


class MessageGen:
    """Turns one spec into a top-level class with nested struct classes."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.name = spec["name"]
        self.versions = parse_versions(spec.get("validVersions")) or (0, 0)
        flex = parse_versions(spec.get("flexibleVersions", "none"))
        self.flexible_min = flex[0] if flex and flex[0] <= flex[1] else None
        self.structs: dict[str, Struct] = {}
        self.root = Struct(self.name, spec.get("fields", []), self.name)
        self.commons: list[Struct] = []
        for common in spec.get("commonStructs", []):
            st = Struct(common["name"], common["fields"], f"{self.name}.{common['name']}")
            self.structs[st.name] = st
            self.commons.append(st)
        for st in list(self.commons):
            self._collect(st)
        self._collect(self.root)

    def _collect(self, st: Struct) -> None:
        for f in st.raw_fields:
            t = f["type"].removeprefix("[]")
            if "fields" in f:
                if t in self.structs:
                    raise ValueError(f"{self.name}: struct {t} defined twice")
                child = Struct(t, f["fields"], f"{st.path}.{t}")
                self.structs[t] = child
                st.children.append(child)
                self._collect(child)

    def struct_of(self, f: dict) -> Struct | None:
        t = f["type"].removeprefix("[]")
        if t in PRIMITIVE_DEFAULTS:
            return None
        if t not in self.structs:
            raise ValueError(f"{self.name}: unknown type {f['type']}")
        return self.structs[t]

    # ---- field table -------------------------------------------------------------------
    def default_of(self, f: dict) -> str:
        """Python source of the Field.default value."""
        t = f["type"]
        d = f.get("default")
        if d == "null":
            return "None"
        if t.startswith("[]") or self.struct_of(f) is not None:
            return "DEFAULT"
        base = PRIMITIVE_DEFAULTS[t]
        if d is None or d == "":
            if t == "string" and d == "":
                return "''"
            return base if isinstance(base, str) and base == "ZERO_UUID" else repr(base)
        if t == "bool":
            return repr(d is True or str(d).lower() == "true")
        if t == "float64":
            return repr(float(d))
        if t == "string":
            return repr(str(d))
        if t in ("int8", "int16", "int32", "int64", "uint16", "uint32"):
            return repr(int(str(d), 0))
        raise ValueError(f"{self.name}: default {d!r} for {t}")

    def field_row(self, f: dict) -> str:
        args = [repr(snake(f["name"])), repr(f["type"]), repr(parse_versions(f["versions"]))]
        nullable = parse_versions(f.get("nullableVersions"))
        if nullable:
            args.append(f"nullable={nullable!r}")
        tagged = parse_versions(f.get("taggedVersions"))
        if tagged:
            args.append(f"tagged={tagged!r}")
            args.append(f"tag={int(f['tag'])}")
        if f.get("ignorable"):
            args.append("ignorable=True")
        default = self.default_of(f)
        if default != "None":
            args.append(f"default={default}")
        st = self.struct_of(f)
        if st is not None:
            args.append(f"struct={st.path}")
        flex = parse_versions(f.get("flexibleVersions"))
        if flex:
            args.append(f"flexible={flex!r}")
        return f"    F({', '.join(args)}),"

    # ---- class source ------------------------------------------------------------------
    def init_source(self, st: Struct, indent: str) -> list[str]:
        params, body = [], []
        for f in st.raw_fields:
            attr = snake(f["name"])
            default = self.default_of(f)
            sub = self.struct_of(f)
            if f["type"].startswith("[]"):
                elem = f["type"][2:]
                ann = f"list[{sub.path if sub else PY_TYPES[elem]}]"
            else:
                ann = sub.path if sub else PY_TYPES[f["type"]]
            if default == "None":
                ann += " | None"
            if default == "DEFAULT":
                params.append(f"{attr}: {ann} = DEFAULT")
                fresh = "[]" if f["type"].startswith("[]") else f"{sub.path}()"
                body.append(f"self.{attr} = {fresh} if {attr} is DEFAULT else {attr}")
            else:
                params.append(f"{attr}: {ann} = {default}")
                body.append(f"self.{attr} = {attr}")
        if not params:
            return []
        lines = [f"{indent}def __init__(self, *, {', '.join(params)}) -> None:"]
        lines += [f"{indent}    {b}" for b in body]
        return lines

    def class_source(self, st: Struct, indent: str, top: bool) -> list[str]:
        lines = [f"{indent}class {st.name}(Message):"]
        inner = indent + "    "
        slots = tuple(snake(f["name"]) for f in st.raw_fields)
        lines.append(f"{inner}__slots__ = {slots!r}")
        if top:
            lines.append(f"{inner}NAME = {self.name!r}")
            if "apiKey" in self.spec:
                lines.append(f"{inner}API_KEY = {self.spec['apiKey']}")
            lines.append(f"{inner}VERSIONS = {self.versions!r}")
            lines.append(f"{inner}FLEXIBLE_MIN = {self.flexible_min!r}")
            for common in self.commons:
                lines.append("")
                lines += self.class_source(common, inner, False)
        for child in st.children:
            lines.append("")
            lines += self.class_source(child, inner, False)
        init = self.init_source(st, inner)
        if init:
            lines.append("")
            lines += init
        return lines

    def tables_source(self) -> list[str]:
        lines = []
        for st in [self.root, *self.structs.values()]:
            rows = [self.field_row(f) for f in st.raw_fields]
            if rows:
                lines.append(f"{st.path}.FIELDS = (")
                lines += rows
                lines.append(")")
            else:
                lines.append(f"{st.path}.FIELDS = ()")
        return lines

    def source(self) -> list[str]:
        return self.class_source(self.root, "", True) + ["", ""] + self.tables_source()


HEADER = '''\
# GENERATED by packaging/gen_kafka_protocol.py from Kafka's JSON message specs. DO NOT EDIT.
# Regenerate with `make generate`; a test fails while this file is stale.
"""Kafka message classes: one class per request/response, nested classes for its structs.

Attributes are the spec's field names in snake_case; `FIELDS` is the schema the codec compiles.
"""

from __future__ import annotations

import uuid

from appliance.kafka.protocol.schema import DEFAULT, ZERO_UUID, ApiMessages, Message
from appliance.kafka.protocol.schema import Field as F
'''


def generate(specs_dir: Path | None = None) -> str:
    specs = specs_dir or default_specs_dir()
    if not specs.is_dir():
        raise FileNotFoundError(f"Kafka message specs not found at {specs} (set MILLSTREAM_KAFKA_SPECS)")
    out = [HEADER]
    registry = []
    names = [n for api in APIS for n in (f"{api}Request", f"{api}Response")] + list(EXTRA)
    gens = {n: MessageGen(load_spec(specs, n)) for n in names}
    for n in names:
        out.append("")
        out += gens[n].source()
        out.append("")
    for api in APIS:
        req, resp = gens[f"{api}Request"], gens[f"{api}Response"]
        key = req.spec["apiKey"]
        if resp.spec["apiKey"] != key or req.versions != resp.versions:
            raise ValueError(f"{api}: request and response disagree on key or versions")
        registry.append((key, api, req, resp))
    out.append("")
    out.append("API_KEYS: dict[int, ApiMessages] = {")
    for key, api, req, resp in sorted(registry, key=lambda r: r[0]):
        out.append(
            f"    {key}: ApiMessages({api!r}, {key}, {req.name}, {resp.name}, "
            f"{req.versions[0]}, {req.versions[1]}, {req.flexible_min!r}),"
        )
    out.append("}")
    out.append("")
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n\n", text)


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run make generate", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
