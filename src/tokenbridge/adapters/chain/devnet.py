"""Start and stop a local anvil node (the devnet) as a child process.

The binary comes from `$TOKENBRIDGE_ANVIL_BIN`, then `node_modules/.bin/anvil` (the
`@foundry-rs/anvil` npm package, installed by `make`), then PATH. Nothing is downloaded.
An explicit binary (argument or a set `$TOKENBRIDGE_ANVIL_BIN`) that is not an executable
file is an error, never skipped for the next candidate.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tokenbridge.domain.errors import ConfigurationError

# anvil's default mnemonic ("test test ... junk") yields these well-known dev keys.
DEV_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)

PROJECT_ROOT = Path(__file__).resolve().parents[4]


def find_anvil(explicit: str | None = None) -> str:
    """Return the anvil binary's path or raise a ConfigurationError that says how to install it."""
    for label, chosen in (
        ("anvil binary", explicit),
        ("TOKENBRIDGE_ANVIL_BIN", os.environ.get("TOKENBRIDGE_ANVIL_BIN")),
    ):
        if chosen:
            if Path(chosen).is_file() and os.access(chosen, os.X_OK):
                return chosen
            raise ConfigurationError(f"{label} {chosen!r} is not an executable file")
    candidates: list[str | None] = [
        str(Path.cwd() / "node_modules" / ".bin" / "anvil"),
        str(PROJECT_ROOT / "node_modules" / ".bin" / "anvil"),
        shutil.which("anvil"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigurationError(
        "anvil not found: run `npm ci` in the project root (installs @foundry-rs/anvil) "
        "or set TOKENBRIDGE_ANVIL_BIN to an anvil binary"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """ConfigurationError("port N is in use") unless `host:port` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is not "in use"
        try:
            sock.bind((host, port))
        except OSError:
            raise ConfigurationError(f"port {port} is in use") from None


def _rpc(url: str, method: str, params: Sequence[object] = ()) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})  # noqa: S310 (local URL we built)
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (local URL we built)
        reply = json.loads(response.read())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


@dataclass
class Anvil:
    """A running anvil child process. Use as a context manager or call `stop()`."""

    port: int
    chain_id: int
    process: subprocess.Popen[bytes]
    accounts: tuple[str, ...] = field(default=DEV_PRIVATE_KEYS)
    # anvil's stderr goes to an unlinked temp file, not a pipe nobody drains (a full pipe would stall it)
    stderr: IO[bytes] | None = field(default=None, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def rpc(self, method: str, *params: object) -> object:
        return _rpc(self.rpc_url, method, params)

    def stop(self) -> None:
        """Terminate by pid (process group), escalating to SIGKILL; idempotent."""
        try:
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGTERM)
                    self.process.wait(timeout=5)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=5)
        finally:
            if self.stderr is not None:
                self.stderr.close()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_anvil(
    *,
    port: int | None = None,
    chain_id: int = 31337,
    block_time: float | None = None,
    no_mining: bool = False,
    extra_args: Sequence[str] = (),
    binary: str | None = None,
    startup_timeout: float = 20.0,
) -> Anvil:
    """Start anvil on 127.0.0.1 and wait until it answers `eth_chainId`."""
    exe = find_anvil(binary)
    if port:
        check_port_free(port)  # else anvil fails to bind and the node already there would answer our probe
    else:
        port = free_port()
    args = [
        exe,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--gas-limit", "36000000",
        "--enable-tx-gas-limit",  # EIP-7825: one transaction may use at most 2**24 gas
        "--silent",
    ]  # fmt: skip
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    if no_mining:
        args.append("--no-mining")
    args += list(extra_args)
    err_file = tempfile.TemporaryFile()  # noqa: SIM115 (owned by the Anvil object, closed in stop())
    process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file, start_new_session=True
    )
    node = Anvil(port=port, chain_id=chain_id, process=process, stderr=err_file)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err_file.seek(0)
            err = err_file.read().decode(errors="replace")
            err_file.close()
            raise ConfigurationError(f"anvil exited with code {process.returncode}: {err.strip()[:500]}")
        try:
            if int(str(node.rpc("eth_chainId")), 16) == chain_id:
                return node
        except OSError:
            time.sleep(0.05)
    node.stop()
    raise ConfigurationError(f"anvil did not answer on port {port} within {startup_timeout} s")
