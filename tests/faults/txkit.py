"""Shared pieces of the transaction manager tests: a fake clock, funded throwaway signers,
a manager factory, a bounded drive loop, and an RPC proxy that counts calls and can lose the
reply to a request after forwarding it (the node got it; the client never hears back)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_account import Account
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3

from tokenbridge.adapters.chain.devnet import Anvil
from tokenbridge.adapters.chain.keystore import Signer, signer_from_private_key
from tokenbridge.adapters.chain.txmanager import TickReport, TxManager, TxView
from tokenbridge.adapters.db.engine import make_engine, session_factories

CHAIN_ID = 31337


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Key:
    """A throwaway funded key; the test (playing "another process") may sign with it directly."""

    def __init__(self, anvil: Anvil) -> None:
        self.account = Account.create()
        self.address: str = self.account.address
        anvil.rpc("anvil_setBalance", self.address, hex(10**21))

    def signer(self) -> Signer:
        return signer_from_private_key(SecretStr(self.account.key.hex()))

    def send_direct(self, w3: Web3, *, nonce: int, to: str, value: int = 1) -> str:
        base = int(w3.eth.get_block("latest")["baseFeePerGas"])
        signed = self.account.sign_transaction(
            {
                "type": 2,
                "chainId": CHAIN_ID,
                "nonce": nonce,
                "to": to,
                "value": value,
                "gas": 21_000,
                "maxFeePerGas": 3 * base + 2 * 10**9,
                "maxPriorityFeePerGas": 2 * 10**9,
            }
        )
        return "0x" + bytes(w3.eth.send_raw_transaction(signed.raw_transaction)).hex()


def web3_for(url: str) -> Web3:
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))


@contextmanager
def database(url: str) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    engine = make_engine(url)
    try:
        yield engine, session_factories(engine)[0]
    finally:
        engine.dispose()


def manager(sessions: sessionmaker[Session], w3: Web3, signer: Signer, **overrides: Any) -> TxManager:
    options: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "confirmations": 1,
        "reprice_after_s": 30,
        "fee_bump_pct": 12,
        "max_in_flight": 32,
    }
    options.update(overrides)
    return TxManager(sessions, w3, signer, **options)


def drive(
    m: TxManager, anvil: Anvil, done: Callable[[], bool], *, rounds: int = 25, mine: bool = True
) -> list[TickReport]:
    """tick (and mine a block) until `done()`; bounded, never timed."""
    reports = []
    for _ in range(rounds):
        reports.append(m.tick())
        if done():
            return reports
        if mine:
            anvil.rpc("evm_mine")
    raise AssertionError(f"not done after {rounds} rounds: {reports[-3:]}")


def all_in(m: TxManager, ids: list[int], *states: str) -> Callable[[], bool]:
    def check() -> bool:
        views = m.txs(ids=ids)
        return len(views) == len(ids) and all(v.state.value in states for v in views)

    return check


def submit_transfers(
    m: TxManager, sessions: sessionmaker[Session], to: str, values: list[int], prefix: str
) -> list[int]:
    with sessions() as s, s.begin():
        return [
            m.submit(s, purpose="test", ref=f"{prefix}:{i}", to=to, data=b"", gas=21_000, value=v)
            for i, v in enumerate(values)
        ]


def by_id(views: list[TxView]) -> dict[int, TxView]:
    return {v.id: v for v in views}


class RpcProxy:
    """HTTP JSON-RPC proxy in a thread. Records every (method, params); for methods in
    `lose_reply`, forwards the request to the node and then closes the connection without
    answering, `lose_reply[method]` times."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.calls: list[tuple[str, list[Any]]] = []
        self.lose_reply: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = json.loads(body)
                method = str(request.get("method"))
                with proxy.lock:
                    proxy.calls.append((method, list(request.get("params") or [])))
                    lose = proxy.lose_reply.get(method, 0) > 0
                    if lose:
                        proxy.lose_reply[method] -= 1
                forward = urllib.request.Request(proxy.upstream, body, {"Content-Type": "application/json"})  # noqa: S310
                with urllib.request.urlopen(forward, timeout=10) as response:  # noqa: S310 (local anvil)
                    reply = response.read()
                if lose:
                    self.close_connection = True
                    return  # the node has it; the client gets no answer at all
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def sent_raw(self) -> list[str]:
        with self.lock:
            return [str(p[0]) for m, p in self.calls if m == "eth_sendRawTransaction"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
