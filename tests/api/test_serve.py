"""`tokenbridge serve` as a real process: it answers over TCP, and a bad config is one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tokenbridge.adapters.db import migrate
from tokenbridge.bootstrap import build_services
from tokenbridge.config import load_settings

TOKENBRIDGE = str(Path(sys.executable).with_name("tokenbridge"))
STARTUP_TIMEOUT_S = 90  # a bound on waiting for start-up under load, not a speed claim


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBRIDGE_")}
    return env | {"TOKENBRIDGE_DATABASE_URL": url}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    migrate.upgrade(url)
    services = build_services(load_settings(database_url=url))
    try:
        _, admin_key = services.api_keys.create("admin")
    finally:
        services.close()
    port = _free_port()
    proc = subprocess.Popen(
        [TOKENBRIDGE, "serve", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        env=_env(url),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("tokenbridge serve did not answer /healthz")
            time.sleep(0.1)
        yield base, admin_key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_serve_answers_over_http(server: tuple[str, str]) -> None:
    base, admin_key = server
    headers = {"Authorization": f"Bearer {admin_key}"}
    assert httpx.get(f"{base}/readyz").status_code == 200
    r = httpx.post(f"{base}/v1/accounts", json={"id": "served", "kind": "creator"}, headers=headers)
    assert r.status_code == 201, r.text
    assert httpx.get(f"{base}/v1/accounts/served", headers=headers).json()["kind"] == "creator"
    assert httpx.get(f"{base}/v1/accounts/served").status_code == 401
    assert "tokenbridge_http_requests_total" in httpx.get(f"{base}/metrics").text


def test_a_deeply_nested_body_is_a_422_not_a_dead_worker(server: tuple[str, str]) -> None:
    """A ~200 KB body of 100,000 nested brackets, with or without a key: the JSON parser must stop
    at the interpreter's recursion limit (a 422), not run the C stack out (the worker would die
    with SIGSEGV: eth-account's py_ecc raises the limit to 100,000 on import)."""
    base, admin_key = server
    depth = 100_000
    body = b"[" * depth + b"]" * depth
    for path, headers in (
        ("/v1/gifts", {}),
        ("/v1/gifts/batch", {"Authorization": f"Bearer {admin_key}"}),
        ("/v1/accounts", {"Authorization": f"Bearer {admin_key}"}),
    ):
        r = httpx.post(f"{base}{path}", content=body, headers=headers | {"Content-Type": "application/json"})
        assert r.status_code == 422, (path, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(f"{base}/healthz").status_code == 200  # the worker is still there


def test_a_body_above_the_limit_is_refused_before_it_is_read(server: tuple[str, str]) -> None:
    from tokenbridge.entrypoints.api.body_limit import MAX_BODY_BYTES

    base, admin_key = server
    headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}
    for path in ("/v1/gifts", "/v1/gifts/batch", "/v1/accounts"):
        r = httpx.post(f"{base}{path}", content=b" " * (MAX_BODY_BYTES + 1), headers=headers)
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert r.json()["type"].endswith("/payload-too-large")
    # a full batch of 1,000 gifts with the longest ids fits
    gift = {"id": "g" * 128, "from": "f" * 128, "to": "t" * 128, "amount": 2**63 - 1}
    big = httpx.post(f"{base}/v1/gifts/batch", json={"gifts": [gift] * 1000}, headers=headers)
    assert big.status_code != 413
    assert len(big.request.content) < MAX_BODY_BYTES


def test_bad_configuration_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = _env(f"sqlite:///{tmp_path / 'x.sqlite3'}") | {"TOKENBRIDGE_CREATOR_BPS": "12345"}
    proc = subprocess.run(
        [TOKENBRIDGE, "serve", "--port", str(_free_port())], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert proc.returncode == 1
    err = proc.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert "TOKENBRIDGE_CREATOR_BPS" in err
    assert "Traceback" not in err


def test_unsupported_database_url_is_one_line(tmp_path: Path) -> None:
    env = _env("mysql://nowhere/db")
    proc = subprocess.run(
        [TOKENBRIDGE, "serve", "--port", str(_free_port())], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert proc.returncode == 1
    err = proc.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert "TOKENBRIDGE_DATABASE_URL" in err
