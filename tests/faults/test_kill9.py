"""Point 6 of the "Bridge worker" issue: `kill -9` the worker at random moments (20 times in CI,
`TOKENBRIDGE_SOAK_KILLS` under `make soak`) while hundreds of recharges, gifts, withdrawals and
deposits flow through the real API (`tokenbridge serve`), the real worker (`tokenbridge worker`)
and a real anvil; restart it at once each time; then require that nothing was lost or applied
twice and that `tokenbridge reconcile` is clean (tests/faults/harness.py, `converge`).

Backend: PostgreSQL when TOKENBRIDGE_TEST_POSTGRES_URL is set, else SQLite (both under `make
soak`, or with TOKENBRIDGE_FAULT_BACKENDS=sqlite,postgres). Replay a failing run with the seed it
prints: `TOKENBRIDGE_FAULT_SEED=<seed> pytest tests/faults/test_kill9.py -s`.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.harness import (
    BridgeSystem,
    Population,
    Traffic,
    TrafficPlan,
    WorkerKiller,
    converge,
    env_float,
    env_int,
    fault_backends,
    log,
    system_or_skip,
)

pytestmark = pytest.mark.chain

KILLS = env_int("TOKENBRIDGE_SOAK_KILLS", 20)
SCALE = env_float("TOKENBRIDGE_SOAK_SCALE", 1.0)  # traffic multiplier


@pytest.fixture(params=fault_backends("auto"))
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BridgeSystem]:
    with system_or_skip(request.param, tmp_path) as running:
        yield running


def test_kill9_worker_repeatedly_loses_nothing_and_doubles_nothing(system: BridgeSystem) -> None:
    seed = int(os.environ.get("TOKENBRIDGE_FAULT_SEED") or secrets.randbits(32))
    log(f"seed {seed} ({system.db_url.split(':')[0]}), {KILLS} kills, traffic x{SCALE}")
    rng = random.Random(seed)
    # the flows are paced over about the time 20 kills take (a worker needs 2-4 s to start)
    plan = TrafficPlan.scaled(SCALE, seconds=3.5 * KILLS)
    pop = Population(system, rng)
    traffic = Traffic(pop, plan)
    traffic.setup()

    killer = WorkerKiller(system, random.Random(rng.random()), KILLS)
    try:
        # the kills start once a deposit went out (the whole pipeline worked once) and the traffic
        # keeps flowing until the last one
        traffic.run(keep_going=killer.running, on_warm=killer.start)
    finally:
        killer.finish()
    log(f"{killer.done} kills, {killer.kills_while_leading} of them while the worker held the lease")
    assert killer.done == KILLS
    assert killer.unexpected_exits == [], f"the worker exited by itself: {killer.unexpected_exits}"
    assert system.worker is not None
    assert system.worker.alive()

    report = converge(system, pop, timeout=120 * max(1.0, SCALE), worker_kills=killer.done)
    log(f"seed {seed}: {report}")
    # the run did what it claims: hundreds of each flow, kills among them
    assert report.recharges >= plan.recharges
    assert report.gifts + pop.gifts_refused >= plan.gifts
    assert report.withdrawals >= plan.withdrawals
    assert report.deposits >= plan.deposits
    assert report.worker_starts == KILLS + 1
