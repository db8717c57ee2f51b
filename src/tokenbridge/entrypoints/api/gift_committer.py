"""Group commit for POST /v1/gifts: concurrent single gifts of one API process share a transaction.

A gift request does not run its own transaction. It queues its command here and awaits a
future; a committer thread takes everything queued (up to `MAX_GROUP` commands), posts
them with one `services.gifts.post_batch` call (a few SQL round trips and one commit,
whatever the group's size) and resolves each request's future with its own outcome:

* `(receipt, created)` -- the request answers 201 (created) or 200 (replay);
* a `TokenbridgeError` -- that item was refused (its problem answer, as before); the
  other items of the group are unaffected (each item is atomic on its own);
* an exception raised by the call itself (a database outage) -- every request of that
  group gets it and answers as an unexpected error of a single posting would.

There is no timer: an idle committer posts a lone request at once (the latency of a
single posting); under load, the requests that arrive while one group is being written
form the next group, so the group size follows the load. Results reach the event loop(s)
with one `call_soon_threadsafe` per group and loop, not one thread hand-off per request.

`post_batch` decides items in queue order against running balances, so a group answers
exactly what posting its requests one by one in arrival order would. Nothing accepted is
dropped: `aclose()` (the app's lifespan exit) drains the queue before the services close,
and `submit` after a close restarts the thread rather than refuse.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeAlias

from tokenbridge.domain.errors import TokenbridgeError
from tokenbridge.services.views import GiftReceipt, PostGift

MAX_GROUP = 1000  # the service's batch limit (domain.gifts.validate_batch_size)

Outcome: TypeAlias = tuple[GiftReceipt, bool] | TokenbridgeError
PostBatch: TypeAlias = Callable[[list[PostGift]], Sequence[Outcome]]
_Waiter: TypeAlias = tuple[PostGift, asyncio.AbstractEventLoop, "asyncio.Future[Outcome]"]

log = logging.getLogger("tokenbridge.api")


def _deliver(results: list[tuple[asyncio.Future[Outcome], Outcome | BaseException]]) -> None:
    """Runs on the waiters' event loop: hand each request its own outcome."""
    for future, outcome in results:
        if future.done():  # the request was cancelled (client gone): its gift still counts
            continue
        if isinstance(outcome, BaseException) and not isinstance(outcome, TokenbridgeError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class GiftCommitter:
    """Committer thread(s) of one API process; `submit` from any event loop.

    `threads` > 1 lets a group be prepared and sent while another one waits for its commit
    (each group is its own transaction; the database's row locks order groups that share a
    sender). On the ledger bench two threads per worker gave no more throughput and a longer
    tail (concurrent groups wait on each other's sender locks), so the app runs one."""

    def __init__(self, post_batch: PostBatch, *, max_group: int = MAX_GROUP, threads: int = 1) -> None:
        if max_group < 1 or threads < 1:
            raise ValueError("max_group and threads must be >= 1")
        self._post_batch = post_batch
        self._max_group = max_group
        self._size = threads
        self._pending: deque[_Waiter] = deque()
        self._cv = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._stopping = False
        # counters for tests and diagnostics (approximate with several threads)
        self.groups = 0
        self.gifts = 0
        self.largest_group = 0

    def submit(self, cmd: PostGift) -> asyncio.Future[Outcome]:
        """Queue `cmd`; the future resolves to its outcome (or raises the group's exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        with self._cv:  # threads only end under this lock, with nothing pending
            if len(self._threads) < self._size:
                self._start()
            self._pending.append((cmd, loop, future))
            self._cv.notify()
        return future

    def _start(self) -> None:
        while len(self._threads) < self._size:
            thread = threading.Thread(target=self._run, name="tb-gift-committer", daemon=True)
            self._threads.append(thread)
            thread.start()

    def queued(self) -> int:
        """Commands waiting for the next group."""
        return len(self._pending)

    def running(self) -> bool:
        return bool(self._threads)

    def closing(self) -> bool:
        """A close is draining the queue."""
        return self._stopping

    async def post(self, cmd: PostGift) -> Outcome:
        """Post `cmd` in the next group and return its outcome. Cancelling the caller does not
        withdraw a queued gift (like a request whose client went away mid-transaction)."""
        return await asyncio.shield(self.submit(cmd))

    def _stop(self) -> list[threading.Thread]:
        with self._cv:
            if self._threads:
                self._stopping = True
                self._cv.notify_all()
            return list(self._threads)

    async def aclose(self) -> None:
        """Post everything queued, then stop the threads (the app's lifespan exit)."""
        for thread in self._stop():
            await asyncio.to_thread(thread.join)

    def close(self) -> None:
        """`aclose` for synchronous callers (never on an event loop that waits for queued gifts)."""
        for thread in self._stop():
            thread.join()

    def _next_group(self) -> list[_Waiter] | None:
        """Everything pending, up to the group size; None when stopping with nothing left (the thread ends)."""
        with self._cv:
            while not self._pending:
                if self._stopping:
                    self._threads.remove(threading.current_thread())
                    if not self._threads:
                        self._stopping = False  # a later submit starts afresh
                    return None
                self._cv.wait()
            pending = self._pending
            n = min(len(pending), self._max_group)
            return [pending.popleft() for _ in range(n)]

    def _run(self) -> None:
        try:
            while (group := self._next_group()) is not None:
                self._commit(group)
        except BaseException:  # not an Exception (the interpreter is going down): fail what is queued
            with self._cv:
                me = threading.current_thread()
                if me in self._threads:
                    self._threads.remove(me)
                stranded = [] if self._threads else list(self._pending)
                if not self._threads:
                    self._pending.clear()
            self._send(stranded, [RuntimeError("the gift committer stopped")] * len(stranded))
            raise

    def _commit(self, group: list[_Waiter]) -> None:
        outcomes: Sequence[Outcome | BaseException]
        try:
            outcomes = self._post_batch([cmd for cmd, _, _ in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"post_batch answered {len(outcomes)} outcomes for {len(group)} gifts")
        except Exception as exc:  # a whole-call failure: every request of the group gets it
            outcomes = [exc] * len(group)
        except BaseException:
            self._send(group, [RuntimeError("the gift committer stopped")] * len(group))
            raise
        self.groups += 1
        self.gifts += len(group)
        self.largest_group = max(self.largest_group, len(group))
        self._send(group, outcomes)

    @staticmethod
    def _send(group: list[_Waiter], outcomes: Sequence[Outcome | BaseException]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome | BaseException]]] = {}
        for (_, loop, future), outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, results)
            except RuntimeError:  # that loop is closed: nobody is waiting there any more
                log.warning("gift results for %d request(s) of a closed event loop were not delivered", len(results))
