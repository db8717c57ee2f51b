"""Point 6 of the "Bridge worker" issue, chain side: stop anvil in the middle of a run (gracefully:
`--state` dumps the chain on exit, its mempool is lost) and start it again on the same port, twice
in CI (`TOKENBRIDGE_SOAK_CHAIN_RESTARTS` under `make soak`), while recharges, gifts, withdrawals
and deposits keep coming. The worker rides out each outage without exiting, sends again what the
node forgot, and at the end nothing was lost or applied twice and `tokenbridge reconcile` is clean.

Backend: SQLite (the kill -9 test takes PostgreSQL when it is configured); both under `make soak`
or with TOKENBRIDGE_FAULT_BACKENDS=sqlite,postgres. Replay with `TOKENBRIDGE_FAULT_SEED=<seed>`.
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
    ChainBouncer,
    Population,
    Traffic,
    TrafficPlan,
    converge,
    env_float,
    env_int,
    fault_backends,
    log,
    system_or_skip,
)

pytestmark = pytest.mark.chain

RESTARTS = env_int("TOKENBRIDGE_SOAK_CHAIN_RESTARTS", 2)
SCALE = env_float("TOKENBRIDGE_SOAK_SCALE", 1.0)


@pytest.fixture(params=fault_backends("sqlite"))
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BridgeSystem]:
    with system_or_skip(request.param, tmp_path) as running:
        yield running


def test_worker_rides_out_anvil_stop_and_start(system: BridgeSystem) -> None:
    seed = int(os.environ.get("TOKENBRIDGE_FAULT_SEED") or secrets.randbits(32))
    log(f"seed {seed} ({system.db_url.split(':')[0]}), {RESTARTS} anvil restarts, traffic x{SCALE}")
    rng = random.Random(seed)
    plan = TrafficPlan.scaled(
        SCALE, users=20, creators=8, recharges=150, gifts=200, withdrawals=30, deposits=20, seconds=10.0 * RESTARTS
    )
    pop = Population(system, rng)
    traffic = Traffic(pop, plan)
    traffic.setup()
    head_before = system.chain.eth.block_number

    bouncer = ChainBouncer(system, random.Random(rng.random()), RESTARTS)
    try:
        traffic.run(keep_going=bouncer.running, on_warm=bouncer.start)
    finally:
        bouncer.finish()
    assert system.chain_restarts == RESTARTS
    assert system.chain.eth.block_number > head_before  # the same chain, still growing

    report = converge(system, pop, timeout=120 * max(1.0, SCALE))
    log(f"seed {seed}: {report}")
    # the worker recovered by itself: the one process started at the beginning is still running
    worker = system.worker
    assert worker is not None
    assert worker.starts == 1
    assert worker.alive(), f"the worker did not survive the chain outage:\n{system.diagnostics()}"
    assert report.withdrawals >= plan.withdrawals
    assert report.deposits >= plan.deposits
