"""The rules evaluator: default deny, deny wins, substitution, filter containment, prefixes, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.security.pki import Identity
from appliance.security.rules import (
    OPS,
    Authorizer,
    DenialAudit,
    Limits,
    RulesError,
    decide,
    explain,
    load_rules,
    parse_rules,
)

REPO = Path(__file__).resolve().parents[2]

RULES = """
[zones.cell]
sl_target = 2
[zones.apps]
[zones.it]
sl_target = 1

[[conduits]]
name = "cell-telemetry"
from = "cell"
to = "mqtt-cell"
allow = ["publish"]
topics = ["uns/acme/plant1/line3/{id}/#", "zones/{zone}/{id}"]
max_qos = 1
rate = { msgs_per_s = 500, max_payload = "64KiB" }

[[conduits]]
name = "cell-commands"
from = "cell"
to = "mqtt-cell"
allow = ["subscribe"]
topics = ["uns/acme/plant1/line3/{id}/cmd/#"]
max_qos = 0

[[conduits]]
name = "apps-read"
from = "apps"
to = ["mqtt-plant", "mqtt-cell"]
allow = ["subscribe"]
topics = ["uns/acme/plant1/#"]

[[conduits]]
name = "apps-consume"
from = "apps"
to = "kafka-plant"
allow = ["consume"]
topics = [{ prefix = "uns.acme.plant1." }, "alerts"]
groups = { prefix = "{id}-" }

[[conduits]]
name = "mes-only"
from = "apps"
to = "kafka-plant"
ids = ["mes-1"]
allow = ["produce", "create_topic"]
topics = { prefix = "mes." }

[[conduits]]
name = "it-read"
from = "it"
to = "kafka-it"
allow = ["consume", "describe"]
topics = "*"
groups = "*"

[[deny]]
name = "no-safety"
from = ["it", "apps"]
ops = ["consume", "describe"]
topics = { prefix = "uns.acme.plant1.safety." }

[[deny]]
name = "safety-mqtt"
ops = ["subscribe", "publish"]
topics = ["uns/acme/plant1/safety/#"]

[[deny]]
name = "quarantine"
ids = ["press-13"]
"""


@pytest.fixture(scope="module")
def rules():
    return parse_rules(RULES, "test.toml")


PRESS7 = Identity("cell", "press-7", "abc")
MES = Identity("apps", "mes-1")
BI = Identity("it", "bi")


def d(rules, ident, listener, op, res="", zone=None):
    return decide(rules, ident, zone, listener, op, res)


# --- default deny


def test_default_deny_without_any_conduit(rules):
    dec = d(rules, PRESS7, "kafka-plant", "produce", "anything")
    assert not dec.allowed and dec.rule_name is None
    assert "no conduit from zone 'cell' to listener 'kafka-plant'" in dec.reason


def test_empty_rules_deny_everything():
    empty = parse_rules("", "empty.toml")
    for op in OPS:
        assert not decide(empty, PRESS7, None, "mqtt-cell", op, "a").allowed


def test_op_not_allowed_by_conduit(rules):
    dec = d(rules, PRESS7, "mqtt-cell", "subscribe", "uns/acme/plant1/line3/press-7/#")
    assert not dec.allowed
    assert "outside every conduit" in dec.reason


def test_unknown_zone_or_listener_denied(rules):
    assert not d(rules, Identity("nowhere", "x"), "mqtt-cell", "publish", "uns/acme/plant1/line3/x/t").allowed
    assert not d(rules, PRESS7, "mqtt-other", "publish", "uns/acme/plant1/line3/press-7/t").allowed


def test_no_identity_and_no_zone_is_denied(rules):
    dec = decide(rules, None, None, "mqtt-cell", "publish", "uns/x")
    assert not dec.allowed and "no zone" in dec.reason


def test_unknown_op_is_a_programming_error(rules):
    with pytest.raises(ValueError, match="unknown operation"):
        d(rules, PRESS7, "mqtt-cell", "pubish", "x")


# --- substitution


def test_device_publishes_under_its_own_path_only(rules):
    ok = d(rules, PRESS7, "mqtt-cell", "publish", "uns/acme/plant1/line3/press-7/temp")
    assert ok.allowed and ok.rule_name == "cell-telemetry"
    assert ok.limits == Limits(max_qos=1, msgs_per_s=500.0, max_payload=64 * 1024)
    other = d(rules, PRESS7, "mqtt-cell", "publish", "uns/acme/plant1/line3/press-8/temp")
    assert not other.allowed and other.rule_name is None


def test_zone_substitution(rules):
    assert d(rules, PRESS7, "mqtt-cell", "publish", "zones/cell/press-7").allowed
    assert not d(rules, PRESS7, "mqtt-cell", "publish", "zones/apps/press-7").allowed


def test_zone_argument_overrides_identity_zone(rules):
    anon_in_cell = Identity("ignored", "press-7")
    assert decide(rules, anon_in_cell, "cell", "mqtt-cell", "publish", "zones/cell/press-7").allowed


def test_unsafe_id_cannot_widen_a_pattern(rules):
    # An id carrying MQTT wildcards or separators (say from a plaintext listener's client id)
    # must not turn uns/.../{id}/# into a wider filter.
    for bad in ("#", "+", "a/b", "", "x y"):
        ident = Identity("cell", bad)
        assert not d(rules, ident, "mqtt-cell", "publish", f"uns/acme/plant1/line3/{bad}/t").allowed
        assert not d(rules, ident, "mqtt-cell", "subscribe", "uns/acme/plant1/line3/+/cmd/#").allowed


def test_anonymous_client_never_matches_id_patterns(rules):
    assert not decide(rules, None, "cell", "mqtt-cell", "publish", "uns/acme/plant1/line3/x/t").allowed


def test_group_prefix_with_id(rules):
    assert d(rules, MES, "kafka-plant", "group_join", "mes-1-orders").allowed
    assert d(rules, MES, "kafka-plant", "group_commit", "mes-1-orders").allowed
    assert not d(rules, MES, "kafka-plant", "group_join", "mes-2-orders").allowed


# --- MQTT subscribe containment


@pytest.mark.parametrize("flt,allowed", [
    ("uns/acme/plant1/line3/#", True),
    ("uns/acme/plant1/line3/+/temp", True),
    ("uns/acme/plant1", True),
    ("uns/acme/#", False),  # not within uns/acme/plant1/#
    ("uns/+/plant1/#", False),
    ("#", False),
])
def test_subscribe_must_stay_within_an_allowed_filter(rules, flt, allowed):
    assert d(rules, MES, "mqtt-plant", "subscribe", flt).allowed is allowed


def test_subscribe_touching_a_denied_subtree_is_denied(rules):
    dec = d(rules, MES, "mqtt-plant", "subscribe", "uns/acme/plant1/#")
    # Explicit deny wins for any filter that could deliver a safety topic.
    assert not dec.allowed and dec.rule_name == "safety-mqtt"
    assert d(rules, MES, "mqtt-plant", "subscribe", "uns/acme/plant1/line3/#").allowed


def test_invalid_topic_or_filter_is_denied(rules):
    assert "not a valid MQTT topic name" in d(rules, PRESS7, "mqtt-cell", "publish", "uns/+/x").reason
    assert "not a valid MQTT topic filter" in d(rules, MES, "mqtt-plant", "subscribe", "uns/#/x").reason


def test_subscribe_limits(rules):
    dec = d(rules, PRESS7, "mqtt-cell", "subscribe", "uns/acme/plant1/line3/press-7/cmd/#")
    assert dec.allowed and dec.limits.max_qos == 0


# --- Kafka prefixes and literals, implied ops


def test_kafka_prefix_and_literal(rules):
    assert d(rules, MES, "kafka-plant", "consume", "uns.acme.plant1.line3.temp").allowed
    assert d(rules, MES, "kafka-plant", "consume", "alerts").allowed
    assert not d(rules, MES, "kafka-plant", "consume", "alerts2").allowed
    assert not d(rules, MES, "kafka-plant", "consume", "uns.acme.plant2.x").allowed


def test_consume_implies_describe_but_not_produce(rules):
    assert d(rules, MES, "kafka-plant", "describe", "uns.acme.plant1.line3.temp").allowed
    assert not d(rules, Identity("apps", "hist"), "kafka-plant", "produce", "uns.acme.plant1.line3.temp").allowed


def test_ids_restrict_a_conduit(rules):
    assert d(rules, MES, "kafka-plant", "produce", "mes.orders").allowed
    assert d(rules, MES, "kafka-plant", "create_topic", "mes.orders").allowed
    dec = d(rules, Identity("apps", "historian"), "kafka-plant", "produce", "mes.orders")
    assert not dec.allowed and "allows produce for apps/historian" in dec.reason


def test_any_literal(rules):
    assert d(rules, BI, "kafka-it", "consume", "whatever.topic").allowed
    assert d(rules, BI, "kafka-it", "group_join", "any-group").allowed
    assert not d(rules, BI, "kafka-it", "produce", "whatever.topic").allowed
    assert not d(rules, BI, "kafka-it", "admin").allowed


# --- explicit deny wins


def test_explicit_deny_beats_a_wildcard_allow(rules):
    dec = d(rules, BI, "kafka-it", "consume", "uns.acme.plant1.safety.estop")
    assert not dec.allowed and dec.rule_name == "no-safety"
    assert "explicit deny" in dec.reason
    assert d(rules, BI, "kafka-it", "consume", "uns.acme.plant1.line3").allowed


def test_deny_scoped_to_topics_leaves_groups_alone(rules):
    assert d(rules, BI, "kafka-it", "group_join", "uns.acme.plant1.safety.g").allowed


def test_deny_without_resources_covers_every_op(rules):
    q = Identity("cell", "press-13")
    for op, res in [("publish", "uns/acme/plant1/line3/press-13/t"),
                    ("subscribe", "uns/acme/plant1/line3/press-13/cmd/#")]:
        dec = d(rules, q, "mqtt-cell", op, res)
        assert not dec.allowed and dec.rule_name == "quarantine"


def test_deny_publish_by_filter(rules):
    dec = d(rules, Identity("cell", "safety"), "mqtt-cell", "publish", "uns/acme/plant1/safety/x")
    assert dec.rule_name == "safety-mqtt"


# --- admin


def test_admin_cluster_op():
    r = parse_rules('[zones.ops]\n[[conduits]]\nname="ops"\nfrom="ops"\nto="admin"\nallow=["admin"]\n', "r.toml")
    assert decide(r, Identity("ops", "alice"), None, "admin", "admin", "").allowed
    assert not decide(r, Identity("ops", "alice"), None, "kafka", "admin", "").allowed


# --- explain


def test_explain_names_the_deciding_rule_and_the_misses(rules):
    ex = explain(rules, PRESS7, None, "mqtt-cell", "publish", "uns/acme/plant1/line3/press-8/t")
    text = ex.render()
    assert text.startswith("DENY by default deny")
    assert "conduit 'cell-telemetry': 'uns/acme/plant1/line3/press-8/t' matches none of" in text
    assert "uns/acme/plant1/line3/press-7/#" in text  # the rendered pattern
    assert "conduit 'cell-commands': does not allow publish" in text
    ok = explain(rules, PRESS7, None, "mqtt-cell", "publish", "uns/acme/plant1/line3/press-7/t").render()
    assert ok.startswith("ALLOW by cell-telemetry")
    assert "limits: max_qos=1, msgs_per_s=500.0, max_payload=65536" in ok


def test_explain_matches_decide_on_every_op(rules):
    for op in OPS:
        for res in ("uns/acme/plant1/line3/press-7/t", "uns.acme.plant1.x", "mes-1-g", ""):
            for ident in (PRESS7, MES, BI):
                for lst in ("mqtt-cell", "mqtt-plant", "kafka-plant", "kafka-it"):
                    assert explain(rules, ident, None, lst, op, res).decision == d(rules, ident, lst, op, res)


# --- audit


def test_authorizer_records_denials_in_a_bounded_ring(rules):
    auth = Authorizer(rules, DenialAudit(capacity=3))
    assert auth.check(1.0, PRESS7, None, "mqtt-cell", "publish", "uns/acme/plant1/line3/press-7/t").allowed
    for i in range(5):
        auth.check(2.0 + i, PRESS7, None, "mqtt-cell", "publish", f"uns/acme/plant1/line3/press-8/{i}")
    auth.check(9.0, BI, None, "kafka-it", "consume", "uns.acme.plant1.safety.estop")
    a = auth.audit
    assert auth.allowed == 1
    assert a.total == 6 and a.dropped == 3
    recent = a.recent()
    assert [x.time for x in recent] == [5.0, 6.0, 9.0]
    assert len(recent) == 3 and recent[-1].rule == "no-safety" and recent[-1].identity == "it/bi"
    assert recent[0].resource == "uns/acme/plant1/line3/press-8/3" and recent[0].serial == "abc"
    assert a.by_op == {"publish": 5, "consume": 1}
    assert a.by_rule == {"default-deny": 5, "no-safety": 1}
    assert a.by_listener["mqtt-cell"] == 5 and a.by_zone["it"] == 1


def test_authorizer_replace_swaps_rules(rules):
    auth = Authorizer(parse_rules("", "empty"))
    assert not auth.check(0, MES, None, "kafka-plant", "consume", "alerts").allowed
    auth.replace(rules)
    assert auth.check(0, MES, None, "kafka-plant", "consume", "alerts").allowed


# --- the shipped example


def test_example_plant_rules_load_and_behave():
    r = load_rules(REPO / "site-configs" / "rules-plant.toml")
    dev = Identity("cell-line3", "press-7")
    assert decide(r, dev, None, "mqtt-cell", "publish", "uns/acme/plant1/line3/press-7/temp").allowed
    assert not decide(r, dev, None, "mqtt-cell", "publish", "uns/acme/plant1/line3/press-8/temp").allowed
    assert not decide(r, dev, None, "mqtt-cell", "subscribe", "uns/acme/#").allowed
    it = Identity("it", "bi")
    assert decide(r, it, None, "kafka-it", "consume", "uns.acme.plant1.line3.temp").allowed
    assert not decide(r, it, None, "kafka-it", "produce", "uns.acme.plant1.line3.temp").allowed
    assert not decide(r, it, None, "kafka-it", "consume", "uns.acme.plant1.safety.estop").allowed
    up = Identity("uplink", "plant1")
    assert decide(r, up, None, "kafka-uplink", "produce", "uns.acme.plant1.line3.temp").allowed
    assert not decide(r, up, None, "kafka-uplink", "produce", "uns.acme.plant2.line3.temp").allowed
    assert not decide(r, up, None, "kafka-uplink", "consume", "uns.acme.plant1.line3.temp").allowed


# --- invalid files


def err(text: str, **kw) -> RulesError:
    with pytest.raises(RulesError) as e:
        parse_rules(text, "bad.toml", **kw)
    return e.value


def test_syntax_error_names_file_and_line():
    e = err('[zones.cell]\n\n[[conduits]]\nname = "x\n')
    assert e.file == "bad.toml" and e.line == 4
    assert str(e).startswith("bad.toml:4: syntax:")
    assert isinstance(e, ConfigError)


BASE = '[zones.cell]\n[[conduits]]\nname = "c1"\nfrom = "cell"\nto = "mqtt"\n'


@pytest.mark.parametrize("extra,line,needle", [
    ('allow = ["pubish"]\ntopics = "a/#"\n', 6, "key 'allow': unknown operation 'pubish'"),
    ('allow = ["publish"]\n', 2, "allows publish but has no topics"),
    ('allow = ["publish", "produce"]\ntopics = "a"\n', 6, "mixes MQTT operations"),
    ('allow = ["publish"]\ntopics = "a/#/b"\n', 7, "'a/#/b' is not a valid MQTT topic filter"),
    ('allow = ["publish"]\ntopics = { prefix = "a" }\n', 7, "not {prefix = ...} tables"),
    ('allow = ["produce"]\ntopics = "a/b"\n', 7, "not a Kafka topic name"),
    ('allow = ["publish"]\ntopics = "a/{user}"\n', 7, "unknown placeholder {user}"),
    ('allow = ["publish"]\ntopics = "a"\nmax_qos = 3\n', 8, "max_qos must be 0, 1 or 2"),
    ('allow = ["produce"]\ntopics = "a"\nmax_qos = 1\n', 8, "max_qos applies to MQTT conduits only"),
    ('allow = ["publish"]\ntopics = "a"\nrate = { msgs_per_s = -1 }\n', 8, "msgs_per_s must be a positive"),
    ('allow = ["publish"]\ntopics = "a"\nrate = { max_payload = "lots" }\n', 8, "max_payload"),
    ('allow = ["publish"]\ntopics = "a"\ntopicz = "b"\n', 8, "key 'topicz': unknown key"),
    ('allow = ["group_join"]\n', 2, "has no groups"),
    ('allow = ["produce"]\ntopics = "a"\ngroups = "g"\n', 8, "groups given but no allowed operation uses groups"),
])
def test_semantic_errors_name_conduit_key_and_line(extra, line, needle):
    e = err(BASE + extra)
    assert e.line == line, str(e)
    assert "conduit 'c1'" in str(e) and needle in str(e)


def test_unknown_zone_and_listener():
    e = err('[zones.cell]\n[[conduits]]\nname = "c"\nfrom = "cel"\nto = "m"\nallow = ["admin"]\n')
    assert e.line == 4 and "unknown zone 'cel'" in str(e)
    e = err('[zones.cell]\n[[conduits]]\nname = "c"\nfrom = "cell"\nto = "m"\nallow = ["admin"]\n',
            known_listeners=["mqtt-cell"])
    assert e.line == 5 and "unknown listener 'm'" in str(e) and "mqtt-cell" in str(e)


def test_duplicate_names_and_missing_keys():
    one = '[[conduits]]\nname = "c"\nfrom = "cell"\nto = "m"\nallow = ["admin"]\n'
    e = err("[zones.cell]\n" + one + one)
    assert "duplicate rule name" in str(e) and e.line == 8  # the second "name ="
    e = err('[zones.cell]\n[[conduits]]\nname = "c"\nto = "m"\nallow = ["admin"]\n')
    assert "missing required key 'from'" in str(e)
    e = err('[zones.cell]\n[[conduits]]\nfrom = "cell"\n')
    assert "every rule needs a name" in str(e)


def test_bad_zone_and_deny():
    e = err("[zones.cell]\nsl_target = 7\n")
    assert e.line == 2 and "sl_target must be an integer 0-4" in str(e)
    e = err('[zones.cell]\n[[deny]]\nname = "d"\ntopics = "a/#"\n')
    assert "deny 'd'" in str(e) and "only MQTT or only Kafka" in str(e)
    e = err('[zoness.cell]\n')
    assert "unknown table 'zoness'" in str(e)


def test_load_rules_missing_file(tmp_path):
    with pytest.raises(RulesError, match="No such file"):
        load_rules(tmp_path / "nope.toml")


def test_reload_keeps_old_rules_when_the_new_file_is_invalid(tmp_path, rules):
    f = tmp_path / "rules.toml"
    f.write_text(RULES)
    auth = Authorizer(parse_rules("", "empty"))
    auth.reload(f)
    assert auth.check(0, MES, None, "kafka-plant", "consume", "alerts").allowed
    f.write_text(RULES.replace('allow = ["consume"]', 'allow = ["consum"]'))
    with pytest.raises(RulesError, match="unknown operation 'consum'"):
        auth.reload(f)
    assert auth.check(0, MES, None, "kafka-plant", "consume", "alerts").allowed
    assert auth.rules.source == str(f)


def test_summary_and_snapshot_are_plain_json(rules):
    import json

    summary = json.loads(json.dumps(rules.summary()))
    c = next(x for x in summary["conduits"] if x["name"] == "cell-telemetry")
    assert c["limits"] == {"max_qos": 1, "msgs_per_s": 500.0, "max_payload": 65536}
    assert c["topics"] == ["uns/acme/plant1/line3/{id}/#", "zones/{zone}/{id}"]
    assert next(x for x in summary["conduits"] if x["name"] == "apps-consume")["groups"] == [{"prefix": "{id}-"}]
    assert next(x for x in summary["denies"] if x["name"] == "quarantine")["topics"] is None
    auth = Authorizer(rules)
    auth.check(3.0, BI, None, "kafka-it", "produce", "t")
    snap = json.loads(json.dumps(auth.audit.snapshot()))
    assert snap["total"] == 1 and snap["recent"][0]["identity"] == "it/bi" and snap["by_op"] == {"produce": 1}
