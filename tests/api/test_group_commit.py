"""Group commit of POST /v1/gifts, through the real app, on SQLite and PostgreSQL.

Concurrent single-gift requests of one API process are posted together by its committer
(entrypoints/api/gift_committer.py). To make a group deterministic, `Gate` wraps the gift
service: its `post_batch` records each group's size and waits until the test releases it.
A "plug" request occupies the committer; the requests under test queue up behind it, one
after the other (each is seen in the committer's queue before the next is sent, so their
order is known); releasing the gate posts them as one group. Every answer must be what the
same requests would get one by one, in that order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tokenbridge.entrypoints.api.app import create_app
from tokenbridge.entrypoints.api.gift_committer import GiftCommitter

from .conftest import Api, TestClient, auth, uid

WAIT_S = 60.0  # a bound on waiting for other threads (a hang fails the test), never a speed claim


class Gate:
    """The gift service, with `post_batch` held until released; records the group sizes."""

    def __init__(self, gifts: Any) -> None:
        self._gifts = gifts
        self.sizes: list[int] = []
        self.open = threading.Event()
        self.fail: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gifts, name)

    def post_batch(self, cmds: list[Any]) -> Any:
        self.sizes.append(len(cmds))
        assert self.open.wait(WAIT_S), "the test never opened the gate"
        if self.fail is not None:
            raise self.fail
        return self._gifts.post_batch(cmds)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.005)


@dataclasses.dataclass
class Rig:
    api: Api
    client: TestClient
    gate: Gate
    committer: GiftCommitter
    pool: ThreadPoolExecutor

    def post(self, body: dict[str, Any], key: str | None = None) -> Future[Any]:
        return self.pool.submit(self.client.post, "/v1/gifts", json=body, headers=auth(key or self.api.app_key))

    def plug(self) -> Future[Any]:
        """A gift that occupies the committer (held at the gate) so the next requests queue up."""
        user, creator = uid("u"), uid("c")
        self.api.open(user)
        self.api.open(creator, "creator")
        self.api.fund(user, 1_000)
        groups = len(self.gate.sizes)
        future = self.post({"id": uid("plug"), "from": user, "to": creator, "amount": 1})
        _until(lambda: len(self.gate.sizes) > groups, "the plug reached the committer")
        assert self.gate.sizes[-1] == 1
        return future

    def queue_in_order(self, bodies: list[dict[str, Any]], key: str | None = None) -> list[Future[Any]]:
        futures = []
        for i, body in enumerate(bodies):
            futures.append(self.post(body, key))
            _until(lambda n=i + 1: self.committer.queued() >= n, f"request {i} queued")
        return futures

    def group(self, bodies: list[dict[str, Any]], key: str | None = None) -> list[Any]:
        """Post `bodies` as one group, in this order; their answers."""
        plug = self.plug()
        futures = self.queue_in_order(bodies, key)
        self.gate.open.set()
        assert plug.result(WAIT_S).status_code == 201
        answers = [f.result(WAIT_S) for f in futures]
        assert self.gate.sizes[-2:] == [1, len(bodies)], self.gate.sizes
        return answers


@pytest.fixture
def rig(api: Api) -> Iterator[Rig]:
    gate = Gate(api.services.gifts)
    app = create_app(dataclasses.replace(api.services, gifts=gate), owns_services=False)
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        ThreadPoolExecutor(64, thread_name_prefix="client") as pool,
    ):
        yield Rig(api, client, gate, app.state.gift_committer, pool)
        gate.open.set()


def _pair(api: Api, funds: int) -> tuple[str, str]:
    user, creator = uid("u"), uid("c")
    api.open(user)
    api.open(creator, "creator")
    if funds:
        api.fund(user, funds)
    return user, creator


def _problem(r: Any) -> str:
    assert r.headers["content-type"] == "application/problem+json", r.text
    code: str = r.json()["type"].rsplit("/", 1)[1]
    return code


def test_exactly_affordable_balance_in_one_group(rig: Rig) -> None:
    user, creator = _pair(rig.api, 5 * 100)
    bodies = [{"id": uid("g"), "from": user, "to": creator, "amount": 100} for _ in range(8)]
    answers = rig.group(bodies)
    assert [a.status_code for a in answers] == [201] * 5 + [409] * 3
    assert {_problem(a) for a in answers[5:]} == {"insufficient-funds"}
    assert rig.api.coins(user) == 0
    for body, answer in zip(bodies[:5], answers[:5], strict=True):
        got = rig.api.client.get(f"/v1/gifts/{body['id']}", headers=auth(rig.api.app_key))
        assert got.json() == answer.json()


def test_exactly_affordable_balance_under_free_running_concurrency(api: Api) -> None:
    """No gate: 40 requests at once from threads, funds for 25 -- exactly 25 succeed, whatever the grouping."""
    user, creator = _pair(api, 25 * 7)
    bodies = [{"id": uid("g"), "from": user, "to": creator, "amount": 7} for _ in range(40)]
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda b: api.client.post("/v1/gifts", json=b, headers=auth(api.app_key)), bodies))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 25 + [409] * 15
    assert {_problem(a) for a in answers if a.status_code == 409} == {"insufficient-funds"}
    assert api.coins(user) == 0


def test_replays_and_conflicts_within_one_group(rig: Rig) -> None:
    user, creator = _pair(rig.api, 1_000)
    gift = {"id": uid("g"), "from": user, "to": creator, "amount": 10}
    other = {"id": uid("g"), "from": user, "to": creator, "amount": 20}
    answers = rig.group([gift, gift, gift | {"amount": 11}, other, other])
    assert [a.status_code for a in answers] == [201, 200, 409, 201, 200]
    assert answers[0].json() == answers[1].json()
    assert answers[3].json() == answers[4].json()
    assert _problem(answers[2]) == "idempotency-conflict"
    assert rig.api.coins(user) == 1_000 - 10 - 20
    # and a replay of a gift created in an earlier group, inside a new group
    rig.gate.open.clear()
    again = rig.group([gift, other | {"amount": 21}])
    assert [a.status_code for a in again] == [200, 409]
    assert again[0].json() == answers[0].json()
    assert rig.api.coins(user) == 1_000 - 10 - 20


def test_refused_items_do_not_affect_the_rest_of_their_group(rig: Rig) -> None:
    api = rig.api
    user, creator = _pair(api, 1_000)
    restricted, _ = _pair(api, 1_000)
    minor, _ = _pair(api, 200 * 10**6)
    admin = auth(api.admin_key)
    assert api.client.patch(f"/v1/accounts/{restricted}", json={"restricted": True}, headers=admin).status_code == 200
    assert api.client.patch(f"/v1/accounts/{minor}", json={"is_minor": True}, headers=admin).status_code == 200

    def gift(sender: str, amount: int, to: str = creator) -> dict[str, Any]:
        return {"id": uid("g"), "from": sender, "to": to, "amount": amount}

    bodies = [
        gift(user, 100),
        gift(user, 5),
        gift(user, 10, to=uid("ghost")),  # unknown creator
        gift(user, 10_000),  # more than the balance
        gift(restricted, 1),  # restricted sender
        gift(minor, 150 * 10**6),  # over a minor's daily limit
        gift(uid("ghost"), 1),  # unknown sender
        gift(user, 7, to=user),  # to a user, not a creator
        gift(user, 300),
    ]
    answers = rig.group(bodies)
    assert [a.status_code for a in answers] == [201, 201, 404, 409, 403, 403, 404, answers[7].status_code, 201]
    assert 400 <= answers[7].status_code < 500
    codes = [_problem(a) for a in answers[2:8]]
    assert codes[:5] == ["not-found", "insufficient-funds", "account-restricted", "limit-exceeded", "not-found"]
    assert api.coins(user) == 1_000 - 100 - 5 - 300
    assert api.coins(restricted) == 1_000
    assert api.coins(minor) == 200 * 10**6


def test_a_failing_group_fails_each_of_its_requests_and_writes_nothing(rig: Rig, caplog: Any) -> None:
    user, creator = _pair(rig.api, 1_000)
    bodies = [{"id": uid("g"), "from": user, "to": creator, "amount": 10} for _ in range(3)]
    plug = rig.plug()
    futures = rig.queue_in_order(bodies)
    rig.gate.fail = RuntimeError("connection to postgresql://u:hunter2@db lost")
    rig.gate.open.set()
    answers = [f.result(WAIT_S) for f in futures]
    assert plug.result(WAIT_S).status_code == 500  # the plug's group failed too
    assert rig.gate.sizes[-2:] == [1, 3]
    for answer in answers:
        assert answer.status_code == 500
        assert _problem(answer) == "internal-error"
        assert "hunter2" not in answer.text
    assert rig.api.coins(user) == 1_000
    for body in bodies:
        assert rig.api.client.get(f"/v1/gifts/{body['id']}", headers=auth(rig.api.app_key)).status_code == 404
    rig.gate.fail = None  # the next group works again
    assert rig.post(bodies[0]).result(WAIT_S).status_code == 201
    assert rig.api.coins(user) == 990


def test_gift_metrics_count_each_request_of_a_group(rig: Rig) -> None:
    user, creator = _pair(rig.api, 1_000)
    gift = {"id": uid("g"), "from": user, "to": creator, "amount": 10}
    rig.group([gift, gift, gift | {"amount": 9}, {"id": uid("g"), "from": user, "to": creator, "amount": 10**6}])
    text = rig.client.get("/metrics").text
    counts = {
        (s.labels["result"], s.labels["code"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tokenbridge_gifts_total"
    }
    # this app's registry is its own: the plug (created) and the group
    assert counts == {
        ("created", ""): 2,
        ("replayed", ""): 1,
        ("rejected", "idempotency-conflict"): 1,
        ("rejected", "insufficient-funds"): 1,
    }


def test_shutdown_posts_every_queued_gift(api: Api) -> None:
    """The lifespan's exit (after uvicorn stopped taking requests) waits for the committer to post
    everything queued: gifts held behind a busy committer are written and answered, not dropped.
    Driven over raw ASGI in one event loop, as a server runs it."""
    gate = Gate(api.services.gifts)
    app = create_app(dataclasses.replace(api.services, gifts=gate), owns_services=False)
    committer: GiftCommitter = app.state.gift_committer
    user, creator = _pair(api, 1_000)
    plug_user, _ = _pair(api, 1_000)
    bodies = [{"id": uid("g"), "from": u, "to": creator, "amount": 10} for u in [plug_user] + [user] * 5]

    async def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline, "timed out waiting"
            await asyncio.sleep(0.005)

    async def main() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        started, stopped = asyncio.Event(), asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            assert not message["type"].endswith(".failed"), message
            (started if message["type"] == "lifespan.startup.complete" else stopped).set()

        lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send))
        await inbox.put({"type": "lifespan.startup"})
        await started.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            requests = []
            for i, body in enumerate(bodies):
                requests.append(asyncio.ensure_future(client.post("/v1/gifts", json=body, headers=auth(api.app_key))))
                if i == 0:  # the plug: the committer holds it at the gate
                    await until(lambda: gate.sizes == [1])
                else:
                    await until(lambda n=i: committer.queued() == n)
            await inbox.put({"type": "lifespan.shutdown"})
            await until(committer.closing)
            assert committer.queued() == 5
            assert not stopped.is_set()  # the exit waits for the queue
            gate.open.set()
            await stopped.wait()
            answers = await asyncio.gather(*requests)
        await lifespan
        assert [a.status_code for a in answers] == [201] * 6
        assert gate.sizes == [1, 5]
        assert not committer.running()

    asyncio.run(main())
    assert api.coins(user) == 1_000 - 50
    for body in bodies:
        assert api.client.get(f"/v1/gifts/{body['id']}", headers=auth(api.app_key)).status_code == 200
