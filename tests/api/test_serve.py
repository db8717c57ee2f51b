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
