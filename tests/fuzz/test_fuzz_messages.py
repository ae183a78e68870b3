"""run-sync's messages as anything on the old broker can send them: any bytes, any JSON,
Contrail's message with fields missing, extra, of the wrong type, or huge. Each is a Change
or a BadMessage with the reason (then quarantined, see test_fuzz_runsync_broker.py); finding
its apply process never fails, so one message can never stop the consumer."""

from __future__ import annotations

import json
import uuid

from hypothesis import example, given
from hypothesis import strategies as st

from backends.runsync.messages import BadMessage, Change, parse, translate
from backends.runsync.processes import process_of
from backends.runsync.routing import object_key
from tests.fuzz.contract import budget

UUID = "8d6e1c4a-2f5b-4a8e-9d7c-0b1a2c3d4e5f"
GOOD = {"request-id": "req-1", "oper": "UPDATE", "type": "virtual-network", "uuid": UUID,
        "fq_name": ["default-domain", "p1", "vn"],
        "obj_dict": {"virtual_network_network_id": 5, "display_name": "vn"}}

# Any text, lone surrogates included: json.loads makes them from "\ud800" escapes.
any_text = st.text(max_size=40)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), any_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=12)


@st.composite
def contrail_like(draw: st.DrawFn) -> dict:
    body = dict(GOOD)
    for key in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=3)):
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(st.one_of(json_values, st.sampled_from(
                ["CREATE", "DELETE", "", ":", "a:b", UUID.upper(), "{" + UUID + "}",
                 "urn:uuid:" + UUID, UUID.replace("-", ""), [""], [], "x" * 100_000,
                 ["default-domain"] * 5000, "\ud800", ["\udfff"]])))
    for key, value in draw(st.dictionaries(any_text, json_values, max_size=3)).items():
        body.setdefault(key, value)  # extra fields
    return body


def _encode(body: object, how: str) -> bytes:
    text = json.dumps(body, ensure_ascii=how == "ascii")
    if how == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    return text.encode("utf-8", "surrogatepass")


payloads = st.one_of(
    st.binary(max_size=300),
    st.tuples(json_values, st.sampled_from(["ascii", "utf-8", "utf-16"])).map(
        lambda t: _encode(*t)),
    st.tuples(contrail_like(), st.sampled_from(["ascii", "utf-8", "utf-16"])).map(
        lambda t: _encode(*t)),
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),  # nested past the stack
    st.integers(1, 200_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


def _check(payload: bytes) -> Change | None:
    try:
        change = parse(payload)
    except BadMessage as exc:
        assert str(exc).strip()
        str(exc).encode()  # the reason travels in an AMQP header and the journal: UTF-8
        return None
    for part in (change.oper, change.type, change.uuid, *(change.fq_name or ())):
        part.encode()  # what is written to Cassandra and named in events
    uuid.UUID(change.uuid)
    return change


@budget(400)
@given(payload=payloads)
@example(payload=b"[" * 100_000)
@example(payload=json.dumps({**GOOD, "uuid": "\ud800"}).encode())
@example(payload=json.dumps({**GOOD, "type": "virtual-\ud800network"}).encode())
@example(payload=json.dumps({**GOOD, "fq_name": ["a", "\udfff"]}).encode())
def test_a_message_is_a_change_or_a_bad_message(payload: bytes) -> None:
    change = _check(payload)
    key = object_key(payload)
    for processes in (1, 7, 32):
        assert 0 <= process_of(key, processes) < processes
    if change is not None:
        out = translate(change.body, "4.1.0", "5.0.0")
        json.dumps(out).encode()  # republished on the new exchange
