"""DESIGN section 3 invariants as property tests over random operation sequences, on
SQLite and PostgreSQL.

Each example opens fresh accounts and runs a random mix of recharges, gifts, refunds,
chargebacks, exact replays, conflicting replays and folds against the real services and
against a plain-Python model; after every example it checks the accounts against the
model and the whole database against the invariants:

1. every transfer's debits == its credits (and all balances sum to zero);
2. no spendable balance below zero; cached balances == balances recomputed from legs;
4. nothing applied twice (the model's exact balances catch any double credit);
3 (ledger side). liabilities == outbox mints - burns == recharges - reversals + debt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support_ledger import LedgerHarness
from tokenbridge.domain.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InsufficientFunds,
    OutstandingDebt,
    TokenbridgeError,
    UnknownPayment,
)
from tokenbridge.domain.recharge import PaymentConflict, apply_recharge, apply_reversal
from tokenbridge.domain.split import split
from tokenbridge.services.ledger import LedgerTotals
from tokenbridge.services.views import PostGift

N_USERS, N_CREATORS, N_PAYMENTS, N_GIFTS, N_HOLDS = 3, 2, 4, 4, 2
amount = st.integers(min_value=1, max_value=5_000)

ops = st.one_of(
    st.tuples(st.just("recharge"), st.integers(0, N_USERS - 1), st.integers(0, N_PAYMENTS - 1), amount),
    st.tuples(
        st.just("gift"),
        st.integers(0, N_USERS - 1),
        st.integers(0, N_CREATORS - 1),
        st.integers(0, N_GIFTS - 1),
        amount,
    ),
    st.tuples(
        st.sampled_from(["recharge.refunded", "recharge.chargeback"]),
        st.integers(0, N_PAYMENTS - 1),
        amount,
    ),
    st.tuples(st.just("replay"), st.integers(0, 50)),
    st.tuples(st.just("conflict"), st.integers(0, 50)),
    st.tuples(st.just("fold")),
    st.tuples(st.just("reserve"), st.integers(0, N_CREATORS - 1), st.integers(0, N_HOLDS - 1), amount),
    st.tuples(st.sampled_from(["post", "void"]), st.integers(0, N_HOLDS - 1)),
)


@dataclass
class Model:
    coins: dict[str, int] = field(default_factory=dict)
    debt: dict[str, int] = field(default_factory=dict)
    earnings: dict[str, int] = field(default_factory=dict)
    payments: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # pid -> (user, amount, reversed)
    gifts: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    events: list[bytes] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    holds: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # hid -> (creator, amount, state)


def _check_invariants(t: LedgerTotals) -> None:
    assert t.unbalanced_transfers == ()  # 1
    assert t.negative_accounts == ()  # 2
    assert t.cache_mismatches == ()  # caches == legs
    assert t.orphan_gifts == 0  # every gift's sender and creator exist (no foreign keys since 0007)
    assert t.liabilities + t.debt * -1 + t.external_payments + t.external_chain == 0  # all balances sum to 0
    # 3, ledger side: what the vault must hold once the outbox is done (payouts = external:chain)
    assert t.liabilities == t.minted - t.burned - t.external_chain
    assert t.liabilities == t.recharged - t.reversed + t.debt - t.external_chain


def _run(h: LedgerHarness, sequence: list[tuple[object, ...]]) -> None:
    svc = h.services
    users = [h.user() for _ in range(N_USERS)]
    creators = [h.creator() for _ in range(N_CREATORS)]
    pids = [h.uid("pay") for _ in range(N_PAYMENTS)]
    gids = [h.uid("g") for _ in range(N_GIFTS)]
    hids = [h.uid("h") for _ in range(N_HOLDS)]
    m = Model(
        coins=dict.fromkeys(users, 0),
        debt=dict.fromkeys(users, 0),
        earnings=dict.fromkeys(creators, 0),
        held=dict.fromkeys(creators, 0),
    )
    holds = svc.holds
    assert holds is not None

    for op in sequence:
        kind = op[0]
        if kind == "recharge":
            _, ui, pi, amt = op
            user, pid = users[int(ui)], pids[int(pi)]  # type: ignore[call-overload]
            body = h.event("recharge.succeeded", user, int(amt), pid)  # type: ignore[call-overload]
            if pid in m.payments and m.payments[pid][:2] != (user, int(amt)):  # type: ignore[call-overload]
                with pytest.raises(PaymentConflict):  # another account or amount: nothing applied or recorded
                    h.deliver(body)
                continue
            m.events.append(body)
            res, applied = h.deliver(body)  # type: ignore[misc]
            if pid in m.payments:
                assert not applied
                assert res.credited == 0
            else:
                out = apply_recharge(int(amt), m.debt[user])  # type: ignore[call-overload]
                m.debt[user] -= out.debt_repaid
                m.coins[user] += out.credited
                m.payments[pid] = (user, int(amt), 0)  # type: ignore[call-overload]
                assert applied
                assert (res.credited, res.debt_repaid) == (out.credited, out.debt_repaid)
        elif kind == "gift":
            _, ui, ci, gi, amt = op
            user, creator, gid = users[int(ui)], creators[int(ci)], gids[int(gi)]  # type: ignore[call-overload]
            cmd = PostGift(gid, user, creator, int(amt))  # type: ignore[call-overload]
            if gid in m.gifts:
                expected_error: type[TokenbridgeError] | None = (
                    None if m.gifts[gid] == (user, creator, cmd.amount) else IdempotencyConflict
                )
            elif m.debt[user] > 0:
                expected_error = OutstandingDebt
            elif m.coins[user] < cmd.amount:
                expected_error = InsufficientFunds
            else:
                expected_error = None
            if expected_error is not None:
                with pytest.raises(expected_error):
                    svc.gifts.post(cmd)
                continue
            receipt, created = svc.gifts.post(cmd)
            assert created == (gid not in m.gifts)
            if created:
                parts = split(cmd.amount, 7_000)
                m.coins[user] -= cmd.amount
                m.earnings[creator] += parts.creator_amount
                m.gifts[gid] = (user, creator, cmd.amount)
                assert receipt.creator_amount == parts.creator_amount
        elif kind in ("recharge.refunded", "recharge.chargeback"):
            _, pi, amt = op
            pid = pids[int(pi)]  # type: ignore[call-overload]
            if pid not in m.payments:
                body = h.event(str(kind), users[0], int(amt), pid)  # type: ignore[call-overload]
                with pytest.raises(UnknownPayment):
                    h.deliver(body)
                continue
            user, paid, reversed_ = m.payments[pid]
            body = h.event(str(kind), user, int(amt), pid)  # type: ignore[call-overload]
            m.events.append(body)
            res, applied = h.deliver(body)  # type: ignore[misc]
            if paid == reversed_:
                assert not applied
                continue
            out = apply_reversal(int(amt), paid - reversed_, m.coins[user])  # type: ignore[call-overload]
            m.coins[user] -= out.reversed
            m.debt[user] += out.debt_recorded
            m.payments[pid] = (user, paid, reversed_ + out.total)
            assert applied
            assert (res.reversed, res.debt_recorded) == (out.reversed, out.debt_recorded)
        elif kind == "replay" and m.events:
            body = m.events[int(op[1]) % len(m.events)]  # type: ignore[call-overload]
            _, applied = h.deliver(body)  # type: ignore[misc]
            assert not applied
        elif kind == "conflict" and m.events:
            body = m.events[int(op[1]) % len(m.events)]  # type: ignore[call-overload]
            tampered = body.replace(b'"amount": ', b'"amount": 1')
            with pytest.raises(IdempotencyConflict):
                h.deliver(tampered)
        elif kind == "fold":
            assert svc.ledger is not None
            svc.ledger.fold()
        elif kind == "reserve":
            _, ci, hi, amt = op
            creator, hid, want = creators[int(ci)], hids[int(hi)], int(amt)  # type: ignore[call-overload]
            if hid in m.holds:
                if m.holds[hid][:2] == (creator, want):
                    assert not holds.reserve(hid, creator, want)[1]
                else:
                    with pytest.raises(IdempotencyConflict):
                        holds.reserve(hid, creator, want)
            elif m.earnings[creator] < want:
                with pytest.raises(InsufficientFunds):
                    holds.reserve(hid, creator, want)
            else:
                assert holds.reserve(hid, creator, want)[1]
                m.holds[hid] = (creator, want, "reserved")
                m.earnings[creator] -= want
                m.held[creator] += want
        elif kind in ("post", "void") and hids[int(op[1])] in m.holds:  # type: ignore[call-overload]
            hid = hids[int(op[1])]  # type: ignore[call-overload]
            creator, held_amount, state = m.holds[hid]
            target = "posted" if kind == "post" else "voided"
            finish = holds.post if kind == "post" else holds.void
            if state in ("reserved", target):
                assert finish(hid).state == target
                if state == "reserved":
                    m.held[creator] -= held_amount
                    if kind == "void":
                        m.earnings[creator] += held_amount
                    m.holds[hid] = (creator, held_amount, target)
            else:
                with pytest.raises(IllegalTransition):
                    finish(hid)

    for user in users:
        b = svc.accounts.get(user).balances
        assert (b.coins, b.debt) == (m.coins[user], m.debt[user])
    for creator in creators:
        b = svc.accounts.get(creator).balances
        assert (b.earnings, b.held) == (m.earnings[creator], m.held[creator])
    assert svc.ledger is not None
    _check_invariants(svc.ledger.totals())


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(ops, min_size=1, max_size=30))
def test_random_operation_sequences_keep_every_invariant(
    ledger: LedgerHarness, sequence: list[tuple[object, ...]]
) -> None:
    _run(ledger, sequence)


def test_invariants_after_fold_and_on_empty_sequence(ledger: LedgerHarness) -> None:
    _run(ledger, [("recharge", 0, 0, 100), ("gift", 0, 0, 0, 60), ("fold",), ("recharge.refunded", 0, 100)])
