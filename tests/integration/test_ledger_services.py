"""The ledger services against real databases (SQLite and PostgreSQL): accounts, gifts,
payments, api keys, health; idempotency and every refusal."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support_ledger import LEDGER_WEBHOOK_SECRETS, LedgerHarness
from tokenbridge.domain.errors import (
    AccountRestricted,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    InvalidSignature,
    LimitExceeded,
    NotFound,
    OutstandingDebt,
    Unauthorized,
    UnknownPayment,
)
from tokenbridge.domain.recharge import PaymentConflict, WebhooksNotConfigured, signature_header
from tokenbridge.services.views import PaymentEventResult, PostGift

MakeLedger = Callable[..., LedgerHarness]


def balances(h: LedgerHarness, account_id: str) -> tuple[int, int, int, int]:
    b = h.services.accounts.get(account_id).balances
    return b.coins, b.earnings, b.held, b.debt


# --- accounts ---------------------------------------------------------------------------------


def test_open_is_idempotent_and_conflicts_on_other_attributes(ledger: LedgerHarness) -> None:
    aid = ledger.uid("u")
    first, created = ledger.services.accounts.open(aid, "user")
    assert created
    assert first.account_key.startswith("0x")
    assert len(first.account_key) == 66
    again, created_again = ledger.services.accounts.open(aid, "user")
    assert not created_again
    assert again.account_key == first.account_key
    with pytest.raises(IdempotencyConflict):
        ledger.services.accounts.open(aid, "creator")
    with pytest.raises(IdempotencyConflict):
        ledger.services.accounts.open(aid, "user", is_minor=True)


def test_get_list_and_flags(ledger: LedgerHarness) -> None:
    with pytest.raises(NotFound):
        ledger.services.accounts.get(ledger.uid("missing"))
    with pytest.raises(InvalidInput):
        ledger.services.accounts.get("bad:id")
    ids = sorted(ledger.user() for _ in range(3))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = ledger.services.accounts.list(limit=2, cursor=cursor)
        seen += [a.id for a in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert set(ids) <= set(seen)
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    view = ledger.services.accounts.set_flags(ids[0], restricted=True)
    assert view.restricted
    assert not view.is_minor
    assert ledger.services.accounts.get(ids[0]).restricted
    with pytest.raises(NotFound):
        ledger.services.accounts.set_flags(ledger.uid("missing"), is_minor=True)


# --- gifts ------------------------------------------------------------------------------------


def test_gift_moves_coins_and_splits(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(1_000), ledger.creator()
    r, created = ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 333))
    assert created
    assert (r.gross, r.creator_amount, r.platform_amount, r.creator_bps) == (333, 233, 100, 7_000)
    assert r.status == "posted"
    assert r.epoch_id is None
    assert r.sender_key == ledger.services.accounts.get(alice).account_key
    assert balances(ledger, alice) == (667, 0, 0, 0)
    assert balances(ledger, bob) == (0, 233, 0, 0)
    assert ledger.services.gifts.get(r.id) == r
    assert [g.id for g in ledger.services.gifts.list(account_id=bob).items] == [r.id]
    listed = {a.id: a for a in ledger.services.accounts.list(limit=1000).items}
    assert listed[bob].balances.earnings == 233  # unfolded legs are counted in listings too
    assert ledger.services.ledger is not None
    ledger.services.ledger.fold()
    assert balances(ledger, bob) == (0, 233, 0, 0)  # and after folding, exactly once


def test_gift_receipt_salt_recomputes_the_key(ledger: LedgerHarness) -> None:
    from tokenbridge.domain.keys import account_key

    alice, bob = ledger.user(10), ledger.creator()
    r, _ = ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 10))
    assert "0x" + account_key(alice, bytes.fromhex(r.sender_salt[2:])).hex() == r.sender_key


def test_gift_replay_and_conflict(ledger: LedgerHarness) -> None:
    alice, bob, carol = ledger.user(1_000), ledger.creator(), ledger.creator()
    gid = ledger.uid("g")
    first, _ = ledger.services.gifts.post(PostGift(gid, alice, bob, 100))
    again, created = ledger.services.gifts.post(PostGift(gid, alice, bob, 100))
    assert not created
    assert again == first
    for other in (PostGift(gid, alice, bob, 101), PostGift(gid, alice, carol, 100)):
        with pytest.raises(IdempotencyConflict):
            ledger.services.gifts.post(other)
    assert balances(ledger, alice)[0] == 900  # charged once


def test_gift_refusals(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(100), ledger.creator()
    with pytest.raises(InsufficientFunds):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 101))
    with pytest.raises(NotFound):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), ledger.uid("nobody"), bob, 1))
    with pytest.raises(NotFound):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, ledger.uid("nobody"), 1))
    with pytest.raises(InvalidInput):  # gifts go to creators
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, ledger.user(), 1))
    restricted_creator = ledger.creator(restricted=True)
    with pytest.raises(AccountRestricted):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, restricted_creator, 1))
    ledger.services.accounts.set_flags(alice, restricted=True)
    with pytest.raises(AccountRestricted):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 1))
    assert balances(ledger, alice)[0] == 100  # nothing moved


def test_daily_gift_limits_for_adults_and_minors(make_ledger: MakeLedger) -> None:
    h = make_ledger(daily_gift_limit=500, minor_daily_gift_limit=50)
    adult, minor, bob = h.user(1_000), h.user(1_000, is_minor=True), h.creator()
    h.services.gifts.post(PostGift(h.uid("g"), adult, bob, 500))
    with pytest.raises(LimitExceeded):
        h.services.gifts.post(PostGift(h.uid("g"), adult, bob, 1))
    h.services.gifts.post(PostGift(h.uid("g"), minor, bob, 50))
    with pytest.raises(LimitExceeded):
        h.services.gifts.post(PostGift(h.uid("g"), minor, bob, 1))


def test_batch_has_per_item_results(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(100), ledger.creator()
    g1, g2, g3 = ledger.uid("g"), ledger.uid("g"), ledger.uid("g")
    results = ledger.services.gifts.post_batch(
        [PostGift(g1, alice, bob, 60), PostGift(g2, alice, bob, 60), PostGift(g3, alice, bob, 40)]
    )
    assert isinstance(results[0], tuple)
    assert results[0][1]
    assert isinstance(results[1], InsufficientFunds)
    assert isinstance(results[2], tuple)
    assert results[2][0].gross == 40
    assert balances(ledger, alice)[0] == 0
    replay = ledger.services.gifts.post_batch([PostGift(g1, alice, bob, 60)])
    assert isinstance(replay[0], tuple)
    assert not replay[0][1]
    with pytest.raises(InvalidInput):
        ledger.services.gifts.post_batch([PostGift(ledger.uid("g"), alice, bob, 1)] * 1001)


# --- payments ---------------------------------------------------------------------------------


def _deliver(h: LedgerHarness, body: bytes) -> tuple[PaymentEventResult, bool]:
    result = h.deliver(body)
    assert isinstance(result, tuple)
    return result  # type: ignore[return-value]


def test_recharge_replay_and_exactly_once_per_payment(ledger: LedgerHarness) -> None:
    alice = ledger.user()
    pid = ledger.uid("pay")
    body = ledger.event("recharge.succeeded", alice, 500, pid)
    first, applied = _deliver(ledger, body)
    assert applied
    assert first.credited == 500
    again, applied_again = _deliver(ledger, body)
    assert not applied_again
    assert again == first
    # the same payment under a new event id is not credited twice
    dup, dup_applied = _deliver(ledger, ledger.event("recharge.succeeded", alice, 500, pid))
    assert not dup_applied
    assert dup.credited == 0
    assert balances(ledger, alice)[0] == 500


def test_event_id_reused_with_other_body_conflicts(ledger: LedgerHarness) -> None:
    alice = ledger.user()
    eid = ledger.uid("evt")
    _deliver(ledger, ledger.event("recharge.succeeded", alice, 500, ledger.uid("pay"), eid))
    with pytest.raises(IdempotencyConflict):
        _deliver(ledger, ledger.event("recharge.succeeded", alice, 501, ledger.uid("pay"), eid))
    assert balances(ledger, alice)[0] == 500


def test_refund_after_spending_records_debt_that_blocks_and_is_repaid(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(), ledger.creator()
    pid = ledger.recharge(alice, 1_000)
    ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 700))
    res, applied = _deliver(ledger, ledger.event("recharge.refunded", alice, 1_000, pid))
    assert applied
    assert (res.reversed, res.debt_recorded) == (300, 700)
    assert balances(ledger, alice) == (0, 0, 0, 700)
    # a second reversal of the same payment (chargeback after refund) has nothing left to take
    cb, cb_applied = _deliver(ledger, ledger.event("recharge.chargeback", alice, 1_000, pid))
    assert not cb_applied
    assert (cb.reversed, cb.debt_recorded) == (0, 0)
    assert balances(ledger, alice)[3] == 700
    # a small recharge only pays debt; spending stays blocked
    small, _ = _deliver(ledger, ledger.event("recharge.succeeded", alice, 200, ledger.uid("pay")))
    assert (small.credited, small.debt_repaid) == (0, 200)
    with pytest.raises((OutstandingDebt, InsufficientFunds)):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 1))
    big, _ = _deliver(ledger, ledger.event("recharge.succeeded", alice, 800, ledger.uid("pay")))
    assert (big.credited, big.debt_repaid) == (300, 500)
    assert balances(ledger, alice) == (300, 0, 0, 0)
    ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 300))
    assert balances(ledger, bob)[1] == 490 + 210  # creator keeps earnings from both gifts


def test_outstanding_debt_blocks_gifts_even_with_coins(ledger: LedgerHarness) -> None:
    """Debt and coins never coexist through the services; the check still stands on its own."""
    from sqlalchemy import update

    from tokenbridge.adapters.db.models import Account

    alice, bob = ledger.user(100), ledger.creator()
    engine = ledger.services.engine
    assert engine is not None
    with engine.begin() as conn:
        conn.execute(update(Account).where(Account.id == alice).values(debt=1))
    with pytest.raises(OutstandingDebt):
        ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 1))
    with engine.begin() as conn:
        conn.execute(update(Account).where(Account.id == alice).values(debt=0))


def test_partial_refunds_never_exceed_the_payment(ledger: LedgerHarness) -> None:
    alice = ledger.user()
    pid = ledger.recharge(alice, 1_000)
    r1, _ = _deliver(ledger, ledger.event("recharge.refunded", alice, 400, pid))
    r2, _ = _deliver(ledger, ledger.event("recharge.chargeback", alice, 1_000, pid))
    assert (r1.reversed, r2.reversed, r2.debt_recorded) == (400, 600, 0)
    assert balances(ledger, alice) == (0, 0, 0, 0)


def test_reversal_errors(ledger: LedgerHarness) -> None:
    alice, other = ledger.user(), ledger.user()
    with pytest.raises(UnknownPayment):
        _deliver(ledger, ledger.event("recharge.refunded", alice, 1, ledger.uid("pay")))
    pid = ledger.recharge(alice, 10)
    with pytest.raises(PaymentConflict):  # the payment belongs to alice
        _deliver(ledger, ledger.event("recharge.refunded", other, 10, pid))
    with pytest.raises(NotFound):
        _deliver(ledger, ledger.event("recharge.succeeded", ledger.uid("nobody"), 10, ledger.uid("pay")))
    with pytest.raises(InvalidInput):  # creators are not recharged
        _deliver(ledger, ledger.event("recharge.succeeded", ledger.creator(), 10, ledger.uid("pay")))


def test_recharge_limits_and_restriction(make_ledger: MakeLedger) -> None:
    h = make_ledger(daily_recharge_limit=1_000, minor_daily_recharge_limit=100)
    adult, minor = h.user(1_000), h.user(100, is_minor=True)
    for aid in (adult, minor):
        with pytest.raises(LimitExceeded):
            h.recharge(aid, 1)
    restricted = h.user(restricted=True)
    with pytest.raises(AccountRestricted):
        h.recharge(restricted, 1)
    assert h.services.accounts.get(restricted).balances.coins == 0


def _payment_row(h: LedgerHarness, payment_id: str) -> tuple[str, int, int]:
    from sqlalchemy import select

    from tokenbridge.adapters.db.models import Payment

    engine = h.services.engine
    assert engine is not None
    with engine.connect() as conn:
        row = conn.execute(
            select(Payment.state, Payment.amount, Payment.reversed_amount).where(Payment.payment_id == payment_id)
        ).one()
    return row[0], row[1], row[2]


def _outbox_refs(h: LedgerHarness, ref_id: str) -> list[str]:
    from sqlalchemy import select

    from tokenbridge.adapters.db.models import OutboxItem

    engine = h.services.engine
    assert engine is not None
    with engine.connect() as conn:
        return list(conn.execute(select(OutboxItem.kind).where(OutboxItem.ref_id == ref_id)).scalars())


def _event_amount(h: LedgerHarness, event_id: str) -> int:
    from sqlalchemy import select

    from tokenbridge.adapters.db.models import PaymentEvent

    engine = h.services.engine
    assert engine is not None
    with engine.connect() as conn:
        amount: int = conn.execute(select(PaymentEvent.amount).where(PaymentEvent.event_id == event_id)).scalar_one()
    return amount


@pytest.mark.parametrize("reversal", ["recharge.refunded", "recharge.chargeback"])
def test_refused_recharge_is_recorded_and_its_reversal_closes_it(make_ledger: MakeLedger, reversal: str) -> None:
    """The provider captured the money before the limit refused it: the payment is kept as
    `refused` (nothing credited, no mint), and its refund/chargeback closes it with nothing to reverse."""
    h = make_ledger(daily_recharge_limit=1_000)
    alice, locked = h.user(1_000), h.user(restricted=True)
    for account, error in ((alice, LimitExceeded), (locked, AccountRestricted)):
        pid, eid = h.uid("pay"), h.uid("evt")
        body = h.event("recharge.succeeded", account, 600, pid, eid)
        with pytest.raises(error, match="recorded as refused"):
            _deliver(h, body)
        assert _payment_row(h, pid) == ("refused", 600, 0)
        assert _outbox_refs(h, eid) == []  # no mint
        again, applied = _deliver(h, body)  # the provider retries: answered, nothing credited
        assert not applied
        assert (again.credited, again.debt_repaid) == (0, 0)
        dup, dup_applied = _deliver(h, h.event("recharge.succeeded", account, 600, pid))  # other event id
        assert not dup_applied
        assert dup.credited == 0

        rid = h.uid("evt")
        res, closed = _deliver(h, h.event(reversal, account, 600, pid, rid))  # was 409 unknown-payment forever
        assert closed
        assert (res.reversed, res.debt_recorded, res.amount) == (0, 0, 0)
        assert _payment_row(h, pid) == ("refused_reversed", 600, 0)
        assert _outbox_refs(h, rid) == []  # no burn
        late, late_applied = _deliver(h, h.event("recharge.chargeback", account, 600, pid))
        assert not late_applied
        assert (late.reversed, late.debt_recorded) == (0, 0)
    assert balances(h, alice) == (1_000, 0, 0, 0)
    assert balances(h, locked) == (0, 0, 0, 0)
    assert h.services.ledger is not None
    t = h.services.ledger.totals()
    assert t.unbalanced_transfers == ()
    assert t.cache_mismatches == ()


def test_payment_id_reused_with_another_amount_or_account_conflicts(ledger: LedgerHarness) -> None:
    alice, bob = ledger.user(), ledger.user()
    pid = ledger.recharge(alice, 500)
    for account, amount in ((alice, 501), (bob, 500)):
        eid = ledger.uid("evt")
        with pytest.raises(PaymentConflict) as info:
            _deliver(ledger, ledger.event("recharge.succeeded", account, amount, pid, eid))
        assert (info.value.status, info.value.code) == (409, "payment-conflict")
        # nothing applied, nothing recorded: the event may be delivered again once corrected
        assert ledger.services.payments is not None
        assert _outbox_refs(ledger, eid) == []
    assert balances(ledger, alice)[0] == 500
    assert balances(ledger, bob)[0] == 0
    assert _payment_row(ledger, pid) == ("succeeded", 500, 0)
    # the same payment, same amount and account, under another event id is still a harmless duplicate
    dup, applied = _deliver(ledger, ledger.event("recharge.succeeded", alice, 500, pid))
    assert not applied
    assert dup.credited == 0


def test_refund_larger_than_what_is_left_records_and_answers_what_was_reversed(ledger: LedgerHarness) -> None:
    alice = ledger.user()
    pid = ledger.recharge(alice, 1_000)
    e1, e2, e3 = ledger.uid("evt"), ledger.uid("evt"), ledger.uid("evt")
    r1, _ = _deliver(ledger, ledger.event("recharge.refunded", alice, 300, pid, e1))
    assert (r1.amount, r1.reversed) == (300, 300)
    r2, applied = _deliver(ledger, ledger.event("recharge.chargeback", alice, 5_000, pid, e2))  # asks for more
    assert applied
    assert (r2.amount, r2.reversed, r2.debt_recorded) == (700, 700, 0)  # what was left, not 5_000
    assert _event_amount(ledger, e2) == 700
    again, replayed_applied = _deliver(ledger, ledger.event("recharge.chargeback", alice, 5_000, pid, e2))
    assert not replayed_applied
    assert again == r2
    r3, applied3 = _deliver(ledger, ledger.event("recharge.refunded", alice, 1, pid, e3))
    assert not applied3
    assert (r3.amount, r3.reversed) == (0, 0)
    assert _event_amount(ledger, e3) == 0
    assert _payment_row(ledger, pid) == ("reversed", 1_000, 1_000)
    assert balances(ledger, alice) == (0, 0, 0, 0)


def test_webhooks_without_a_secret_are_not_configured(make_ledger: MakeLedger) -> None:
    h = make_ledger(webhook_secrets="")
    alice = h.user()
    assert h.services.payments.configured is False
    body = h.event("recharge.succeeded", alice, 5, h.uid("pay"))
    with pytest.raises(WebhooksNotConfigured):
        # even a body "signed" with the old public default is refused
        h.services.payments.handle_webhook(
            body, signature_header([b"whsec_dev_only_change_me"], int(time.time()), body)
        )
    assert balances(h, alice)[0] == 0


def test_the_old_public_default_secret_is_refused_as_configuration(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenbridge.config import load_settings
    from tokenbridge.domain.errors import ConfigurationError

    monkeypatch.delenv("TOKENBRIDGE_WEBHOOK_SECRETS", raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no stray .env

    with pytest.raises(ConfigurationError, match="TOKENBRIDGE_WEBHOOK_SECRETS"):
        load_settings(database_url=db_url, webhook_secrets="whsec_new,whsec_dev_only_change_me")
    assert load_settings(database_url=db_url).webhook_secret_list() == []


def test_webhook_signatures_at_the_service(ledger: LedgerHarness) -> None:
    alice = ledger.user()
    body = ledger.event("recharge.succeeded", alice, 5, ledger.uid("pay"))
    pay = ledger.services.payments
    now = int(time.time())
    with pytest.raises(InvalidSignature):
        pay.handle_webhook(body, signature_header([b"forged"], now, body))
    with pytest.raises(InvalidSignature):
        pay.handle_webhook(body, None)
    with pytest.raises(InvalidSignature):
        pay.handle_webhook(body, signature_header([LEDGER_WEBHOOK_SECRETS[0].encode()], now - 301, body), now=now)
    with pytest.raises(InvalidSignature):
        pay.handle_webhook(body, signature_header([LEDGER_WEBHOOK_SECRETS[0].encode()], now + 301, body), now=now)
    assert ledger.services.accounts.get(alice).balances.coins == 0
    # the previous secret still works during rotation
    _, applied = pay.handle_webhook(body, signature_header([LEDGER_WEBHOOK_SECRETS[1].encode()], now, body))
    assert applied
    with pytest.raises(InvalidInput):
        pay.handle_webhook(b"{}", signature_header([LEDGER_WEBHOOK_SECRETS[0].encode()], now, b"{}"))


def test_outbox_rows_follow_coins(ledger: LedgerHarness) -> None:
    from sqlalchemy import select

    from tokenbridge.adapters.db.models import OutboxItem

    alice, bob = ledger.user(), ledger.creator()
    pid = ledger.recharge(alice, 1_000)
    ledger.services.gifts.post(PostGift(ledger.uid("g"), alice, bob, 600))
    _deliver(ledger, ledger.event("recharge.refunded", alice, 1_000, pid))
    engine = ledger.services.engine
    assert engine is not None
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxItem.kind, OutboxItem.amount, OutboxItem.state).where(OutboxItem.account_id == alice)
        ).all()
    assert sorted(rows) == [("burn", 400, "pending"), ("mint", 1_000, "pending")]


# --- api keys, health ---------------------------------------------------------------------------


def test_api_keys(ledger: LedgerHarness) -> None:
    alice = ledger.user()
    info, key = ledger.services.api_keys.create("app", alice)
    assert ledger.services.api_keys.authenticate(key) == info
    assert info.account_id == alice
    assert info.scope == "app"
    with pytest.raises(Unauthorized):
        ledger.services.api_keys.authenticate(key + "x")
    with pytest.raises(Unauthorized):
        ledger.services.api_keys.authenticate("")
    with pytest.raises(NotFound):
        ledger.services.api_keys.create("app", ledger.uid("nobody"))
    with pytest.raises(InvalidInput):
        ledger.services.api_keys.create("root")  # type: ignore[arg-type]
    assert info.id in {k.id for k in ledger.services.api_keys.list()}
    assert ledger.services.api_keys.revoke(info.id).revoked
    with pytest.raises(Unauthorized):
        ledger.services.api_keys.authenticate(key)


def test_health_ready(ledger: LedgerHarness) -> None:
    ledger.services.health.ready()


def test_daily_limits_reset_on_the_next_utc_day(db_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from tokenbridge.bootstrap import build_services
    from tokenbridge.config import load_settings

    now = [datetime(2030, 1, 1, 23, 59, tzinfo=UTC)]
    settings = load_settings(
        database_url=db_url, webhook_secrets=LEDGER_WEBHOOK_SECRETS[0], daily_gift_limit=100, creator_bps=7_000
    )
    services = build_services(settings, clock=lambda: now[0])
    try:
        h = LedgerHarness.__new__(LedgerHarness)
        h.url, h.services = db_url, services
        alice, bob = h.user(1_000), h.creator()
        services.gifts.post(PostGift(h.uid("g"), alice, bob, 100))
        with pytest.raises(LimitExceeded):
            services.gifts.post(PostGift(h.uid("g"), alice, bob, 1))
        now[0] += timedelta(minutes=2)  # 00:01 the next day
        services.gifts.post(PostGift(h.uid("g"), alice, bob, 100))
        assert services.accounts.get(alice).balances.coins == 800
    finally:
        services.close()


# --- database CLI error paths: one line, never a traceback -----------------------------------------


def _tokenbridge(*args: str, cwd: Path) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    cli = str(Path(sys.executable).with_name("tokenbridge"))
    out = subprocess.run([cli, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False)
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    return out.returncode, out.stderr.strip()


@pytest.mark.parametrize("command", ["upgrade", "current"])
def test_db_commands_with_a_bad_url_are_one_line(tmp_path: Path, command: str) -> None:
    code, err = _tokenbridge("db", command, "--url", "nonsense://x", cwd=tmp_path)
    assert (code, err) == (1, "error: unsupported database URL scheme 'nonsense': use sqlite:/// or postgresql://")
    code, err = _tokenbridge("db", command, "--url", "postgresql://postgres@127.0.0.1:1/nowhere", cwd=tmp_path)
    assert code == 1
    assert err.startswith("error: cannot connect to postgresql+psycopg://postgres@127.0.0.1:1/nowhere: ")
    assert len(err.splitlines()) == 1


def test_db_upgrade_never_creates_the_sqlite_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    code, err = _tokenbridge("db", "upgrade", "--url", f"sqlite:///{missing / 'x.db'}", cwd=tmp_path)
    assert (code, err) == (
        1,
        f"error: cannot create the SQLite database {missing / 'x.db'}: directory {missing} does not exist",
    )
    assert not (tmp_path / "no").exists()
    code, _ = _tokenbridge("db", "upgrade", "--url", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)  # parent exists
    assert code == 0


def test_apikey_create_on_an_unmigrated_database_is_one_line(db_url: str, tmp_path: Path) -> None:
    from support_ledger import create_postgres_database, drop_postgres_database

    if db_url.startswith("sqlite"):
        fresh, cleanup = f"sqlite:///{tmp_path / 'fresh.db'}", None
    else:
        fresh, name = create_postgres_database(db_url, "tb_unmigrated")
        cleanup = name
    try:
        for args in (("apikey", "create", "--scope", "admin"), ("apikey", "list"), ("apikey", "revoke", "key_x")):
            code, err = _tokenbridge(*args, "--url", fresh, cwd=tmp_path)
            assert (code, err) == (1, "error: database not migrated: run `tokenbridge db upgrade`"), args
    finally:
        if cleanup is not None:
            drop_postgres_database(db_url, cleanup)
