"""The bridge signer: encrypted keystores written 0600, keys never shown, clear errors.

Keystores are created in tmp_path with a cheap KDF setting (the format is the same); no key
file is ever committed.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import stat
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from pydantic import SecretStr

from tokenbridge.adapters.chain import keystore as ks
from tokenbridge.adapters.chain.devnet import DEV_PRIVATE_KEYS

KEY = DEV_PRIVATE_KEYS[3]
ADDRESS = Account.from_key(KEY).address
KEY_HEX = KEY.removeprefix("0x").lower()
FAST = {"kdf": "pbkdf2", "iterations": 2}


def _tx() -> dict[str, object]:
    return {
        "type": 2,
        "chainId": 31337,
        "nonce": 0,
        "to": ADDRESS,
        "value": 1,
        "data": b"",
        "gas": 21_000,
        "maxFeePerGas": 2,
        "maxPriorityFeePerGas": 1,
    }


def test_create_then_load_round_trips_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "bridge.json"
    address = ks.create_keystore(path, SecretStr("pw-1"), private_key=SecretStr(KEY), **FAST)  # type: ignore[arg-type]
    assert address == ADDRESS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY_HEX not in path.read_text()  # encrypted, not plain
    assert json.loads(path.read_text())["version"] == 3
    signer = ks.signer_from_keystore(path, SecretStr("pw-1"))
    assert signer.address == ADDRESS
    signed = signer.sign_transaction(_tx())
    assert Account.recover_transaction(signed.raw) == ADDRESS
    assert signed.tx_hash == "0x" + keccak(signed.raw).hex()


def test_fresh_key_is_random_and_never_overwritten(tmp_path: Path) -> None:
    a = ks.create_keystore(tmp_path / "a.json", "pw", **FAST)  # type: ignore[arg-type]
    b = ks.create_keystore(tmp_path / "b.json", "pw", **FAST)  # type: ignore[arg-type]
    assert a != b
    before = (tmp_path / "a.json").read_bytes()
    with pytest.raises(ks.KeystoreError, match="already exists"):
        ks.create_keystore(tmp_path / "a.json", "pw", **FAST)  # type: ignore[arg-type]
    assert (tmp_path / "a.json").read_bytes() == before
    with pytest.raises(ks.KeystoreError, match="empty password"):
        ks.create_keystore(tmp_path / "c.json", "", **FAST)  # type: ignore[arg-type]


def test_wrong_password_missing_file_and_garbage_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    ks.create_keystore(path, "right", private_key=SecretStr(KEY), **FAST)  # type: ignore[arg-type]
    with pytest.raises(ks.KeystoreError, match="wrong password") as exc:
        ks.signer_from_keystore(path, "wrong")
    assert KEY_HEX not in str(exc.value)
    with pytest.raises(ks.KeystoreError, match="does not exist"):
        ks.signer_from_keystore(tmp_path / "nope.json", "x")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ks.KeystoreError, match="unreadable"):
        ks.signer_from_keystore(tmp_path / "junk.json", "x")


def test_key_never_appears_in_repr_str_logs_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(ks.PRIVATE_KEY_ENV, KEY)
    signer = ks.signer_from_env()
    assert signer.address == ADDRESS
    for shown in (repr(signer), str(signer), f"{signer}"):
        assert KEY_HEX not in shown.lower()
        assert ADDRESS in shown
    assert not any(name for name in dir(signer) if "key" in name.lower() and not name.startswith("_"))
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    with pytest.raises(TypeError):
        copy.deepcopy(signer)
    bad = "0x" + "zz" * 32
    with pytest.raises(ks.KeystoreError) as exc:
        ks.signer_from_private_key(SecretStr(bad))
    assert "zz" not in str(exc.value)
    assert KEY_HEX not in caplog.text.lower()


def test_load_signer_prefers_the_keystore_and_explains_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.json"
    ks.create_keystore(path, "pw", private_key=SecretStr(KEY), **FAST)  # type: ignore[arg-type]
    other = SecretStr(DEV_PRIVATE_KEYS[4])
    assert ks.load_signer(keystore=path, keystore_password=SecretStr("pw"), private_key=other).address == ADDRESS
    assert ks.load_signer(private_key=other).address == Account.from_key(DEV_PRIVATE_KEYS[4]).address
    with pytest.raises(ks.KeystoreError, match="PASSWORD"):
        ks.load_signer(keystore=path)
    with pytest.raises(ks.KeystoreError, match="no bridge key"):
        ks.load_signer()
    monkeypatch.delenv(ks.PRIVATE_KEY_ENV, raising=False)
    with pytest.raises(ks.KeystoreError, match="not set"):
        ks.signer_from_env()


def test_default_scrypt_keystore_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "scrypt.json"
    address = ks.create_keystore(path, SecretStr("pw"))
    assert json.loads(path.read_text())["crypto"]["kdf"] == "scrypt"
    assert ks.signer_from_keystore(path, "pw").address == address
