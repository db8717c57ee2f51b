"""Webhook signatures, event parsing and the recharge/reversal math: no database."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenbridge.domain.errors import InvalidAmount, InvalidInput, InvalidSignature
from tokenbridge.domain.recharge import (
    WebhooksNotConfigured,
    apply_recharge,
    apply_reversal,
    parse_event,
    sign,
    signature_header,
    verify_signature,
)

NEW, OLD = b"whsec_new", b"whsec_old"
NOW = 1_700_000_000
BODY = json.dumps(
    {"id": "evt_1", "type": "recharge.succeeded", "data": {"payment_id": "p1", "account_id": "alice", "amount": 5}}
).encode()


def test_valid_signature() -> None:
    assert verify_signature(BODY, signature_header([NEW], NOW, BODY), [NEW], NOW) == NOW


def test_any_configured_secret_matches_during_rotation() -> None:
    # provider still signs with the old secret; we accept both
    verify_signature(BODY, signature_header([OLD], NOW, BODY), [NEW, OLD], NOW)
    # provider sends both signatures; we only know the new one
    verify_signature(BODY, signature_header([OLD, NEW], NOW, BODY), [NEW], NOW)
    # old secret retired: refused
    with pytest.raises(InvalidSignature):
        verify_signature(BODY, signature_header([OLD], NOW, BODY), [NEW], NOW)


def test_forged_and_tampered() -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(BODY, signature_header([b"attacker"], NOW, BODY), [NEW], NOW)
    tampered = BODY.replace(b'"amount": 5', b'"amount": 5000')
    with pytest.raises(InvalidSignature):
        verify_signature(tampered, signature_header([NEW], NOW, BODY), [NEW], NOW)
    # the timestamp is part of what is signed: moving it breaks the signature
    header = f"t={NOW + 1},v1={sign(NEW, NOW, BODY)}"
    with pytest.raises(InvalidSignature):
        verify_signature(BODY, header, [NEW], NOW)


@pytest.mark.parametrize(("offset", "ok"), [(-300, True), (300, True), (-301, False), (301, False), (-86_400, False)])
def test_tolerance_both_ways(offset: int, ok: bool) -> None:
    header = signature_header([NEW], NOW + offset, BODY)
    if ok:
        verify_signature(BODY, header, [NEW], NOW)
    else:
        with pytest.raises(InvalidSignature, match="tolerance"):
            verify_signature(BODY, header, [NEW], NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"v1={sign(NEW, NOW, BODY)}",
        f"t={NOW}",
        f"t=abc,v1={sign(NEW, NOW, BODY)}",
        f"t=-5,v1={sign(NEW, NOW, BODY)}",
        f"t={NOW},t={NOW},v1={sign(NEW, NOW, BODY)}",
        "t=1," + "v1=00," * 1000,
    ],
)
def test_malformed_headers(header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(BODY, header, [NEW], NOW)


def test_other_schemes_are_ignored_and_v1_still_needed() -> None:
    header = f"t={NOW},v0={sign(NEW, NOW, BODY)}"
    with pytest.raises(InvalidSignature):
        verify_signature(BODY, header, [NEW], NOW)
    verify_signature(BODY, header + f",v1={sign(NEW, NOW, BODY)}", [NEW], NOW)


def test_no_secret_configured_is_a_server_error_not_a_bad_signature() -> None:
    with pytest.raises(WebhooksNotConfigured) as info:
        verify_signature(BODY, signature_header([NEW], NOW, BODY), [], NOW)
    assert (info.value.status, info.value.code) == (503, "webhooks-not-configured")
    assert not isinstance(info.value, InvalidSignature)


_GOOD = sign(NEW, NOW, BODY)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f"t={NOW},v1={_GOOD[:-1]}\u00e9", id="latin1-in-v1"),  # 64 chars, one not ASCII
        pytest.param(f"t={NOW},v1={_GOOD[:-2]}\u00ff\u00fe", id="latin1-bytes"),
        pytest.param(f"t={NOW},v1={'g' * 64}", id="non-hex"),
        pytest.param(f"t={NOW},v1={_GOOD[:-2]}", id="short"),
        pytest.param(f"t={NOW},v1={_GOOD}00", id="long"),
        pytest.param(f"t={NOW},v1=", id="empty-v1"),
        pytest.param(f"t={NOW},v1={_GOOD},v1=zz", id="one-good-one-malformed"),
        pytest.param(f"t=,v1={_GOOD}", id="empty-t"),
        pytest.param(f"t=\u0661\u0662,v1={_GOOD}", id="non-ascii-digits-t"),
        pytest.param(f"t={'9' * 13},v1={_GOOD}", id="huge-t"),
        pytest.param(f"t={NOW},t={NOW + 1},v1={_GOOD}", id="duplicate-t"),
        pytest.param(f"t=1e9,v1={_GOOD}", id="float-t"),
        pytest.param(f"t=\u00e9{NOW},v1={_GOOD}", id="latin1-in-t"),
    ],
)
def test_malformed_signature_values_are_invalid_signature_never_a_type_error(header: str) -> None:
    with pytest.raises(InvalidSignature):
        verify_signature(BODY, header, [NEW], NOW)


def test_upper_case_hex_signature_still_verifies() -> None:
    verify_signature(BODY, f"t={NOW},v1={_GOOD.upper()}", [NEW], NOW)


def test_parse_event() -> None:
    ev = parse_event(BODY)
    assert (ev.id, ev.type, ev.payment_id, ev.account_id, ev.amount) == (
        "evt_1",
        "recharge.succeeded",
        "p1",
        "alice",
        5,
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", InvalidInput),
        (b"[1]", InvalidInput),
        (b'{"id": "e", "type": "recharge.exploded", "data": {}}', InvalidInput),
        (b'{"id": "e", "type": "recharge.succeeded"}', InvalidInput),
        (
            b'{"id": "", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a", "amount": 1}}',
            InvalidInput,
        ),
        (
            b'{"id": "e", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a", "amount": 1.5}}',
            InvalidAmount,
        ),
        (
            b'{"id": "e", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a", "amount": 0}}',
            InvalidAmount,
        ),
        (
            b'{"id": "e", "type": "recharge.succeeded", "data": {"payment_id": "p", "account_id": "a", "amount": "5"}}',
            InvalidAmount,
        ),
        (
            b'{"id": "e", "type": "recharge.refunded", "data": {"payment_id": "p", "account_id": "a", '
            b'"amount": 9223372036854775808}}',
            InvalidAmount,
        ),
    ],
)
def test_parse_event_refuses(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_event(body)


def test_recharge_pays_debt_first() -> None:
    assert apply_recharge(100, 30).debt_repaid == 30
    assert apply_recharge(100, 30).credited == 70
    assert apply_recharge(20, 30).debt_repaid == 20
    assert apply_recharge(20, 30).credited == 0
    p = apply_recharge(100, 30).posting("alice")
    assert sum(p.effects().values()) == 0


@settings(max_examples=300)
@given(
    requested=st.integers(1, 10**12),
    refundable=st.integers(0, 10**12),
    coins=st.integers(0, 10**12),
)
def test_reversal_takes_what_it_can_and_records_the_rest(requested: int, refundable: int, coins: int) -> None:
    out = apply_reversal(requested, refundable, coins)
    assert out.total == min(requested, refundable)  # never more than the payment had left
    assert 0 <= out.reversed <= coins
    assert out.debt_recorded >= 0
    # debt only when the coins could not cover it
    assert out.debt_recorded == 0 or out.reversed == min(coins, out.total)
    if out.total:
        posting = out.posting("recharge.refunded", "alice")
        assert sum(posting.effects().values()) == 0


@settings(max_examples=200)
@given(amount=st.integers(1, 10**12), debt=st.integers(0, 10**12))
def test_recharge_math(amount: int, debt: int) -> None:
    out = apply_recharge(amount, debt)
    assert out.debt_repaid + out.credited == amount
    assert out.debt_repaid == min(amount, debt)
