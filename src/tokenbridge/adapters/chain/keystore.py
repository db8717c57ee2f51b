"""The worker's hot key: loaded from an encrypted keystore (Web3 Secret Storage v3) or from a
private key in the environment, and then only ever used to sign.

The key is never logged, never part of a repr, never returned by any function here: a
`Signer` exposes its address and `sign_transaction`, nothing else, and refuses to be
pickled or copied. Errors name the file or the variable, never the secret.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from eth_account import Account
from pydantic import SecretStr

from tokenbridge.domain.errors import ConfigurationError

PRIVATE_KEY_ENV = "TOKENBRIDGE_BRIDGE_PRIVATE_KEY"
KEYSTORE_MODE = 0o600


class KeystoreError(ConfigurationError):
    code = "keystore-error"
    title = "Signer key could not be loaded"


@dataclass(frozen=True, slots=True)
class SignedTx:
    raw: bytes
    tx_hash: str  # 0x-prefixed, lowercase


class Signer:
    """Signs transactions with one key; shows only its address."""

    __slots__ = ("__account", "address")

    def __init__(self, account: Any) -> None:
        self.__account = account
        self.address: str = str(account.address)

    def sign_transaction(self, tx: Mapping[str, Any]) -> SignedTx:
        signed = self.__account.sign_transaction(dict(tx))
        return SignedTx(raw=bytes(signed.raw_transaction), tx_hash="0x" + bytes(signed.hash).hex())

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Signer cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("a Signer cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("a Signer cannot be copied")


def _secret(value: SecretStr | str) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _account_from_key(private_key: SecretStr) -> Any:
    try:
        return Account.from_key(private_key.get_secret_value().strip())
    except (ValueError, TypeError) as exc:  # the messages are dropped: they could quote the input
        raise KeystoreError(f"the bridge private key is not a valid secp256k1 key ({type(exc).__name__})") from None


def signer_from_private_key(private_key: SecretStr) -> Signer:
    return Signer(_account_from_key(private_key))


def signer_from_env(variable: str = PRIVATE_KEY_ENV) -> Signer:
    raw = os.environ.get(variable)
    if not raw:
        raise KeystoreError(f"{variable} is not set")
    return signer_from_private_key(SecretStr(raw))


def signer_from_keystore(path: Path | str, password: SecretStr | str) -> Signer:
    path = Path(path)
    try:
        keyfile = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeystoreError(f"keystore {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise KeystoreError(f"keystore {path} is unreadable: {type(exc).__name__}") from None
    try:
        key = Account.decrypt(keyfile, _secret(password))
    except ValueError:
        raise KeystoreError(f"keystore {path}: wrong password or corrupt file") from None
    except (KeyError, TypeError, NotImplementedError) as exc:
        raise KeystoreError(f"keystore {path} is not a v3 keystore: {type(exc).__name__}") from None
    account = Account.from_key(key)
    del key
    return Signer(account)


def load_signer(
    *,
    keystore: Path | None = None,
    keystore_password: SecretStr | None = None,
    private_key: SecretStr | None = None,
) -> Signer:
    """The bridge signer from settings: the keystore if configured, else the private key."""
    if keystore is not None:
        if keystore_password is None:
            raise KeystoreError("TOKENBRIDGE_BRIDGE_KEYSTORE is set but TOKENBRIDGE_BRIDGE_KEYSTORE_PASSWORD is not")
        return signer_from_keystore(keystore, keystore_password)
    if private_key is not None:
        return signer_from_private_key(private_key)
    raise KeystoreError(
        "no bridge key: set TOKENBRIDGE_BRIDGE_KEYSTORE (+ _PASSWORD) or TOKENBRIDGE_BRIDGE_PRIVATE_KEY"
    )


def create_keystore(
    path: Path | str,
    password: SecretStr | str,
    *,
    private_key: SecretStr | None = None,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    iterations: int | None = None,
) -> str:
    """Write an encrypted keystore (mode 0600, never overwriting) and return its address.

    A fresh random key unless `private_key` is given (to import an existing key).
    """
    path = Path(path)
    if not _secret(password):
        raise KeystoreError("refusing to create a keystore with an empty password")
    account = _account_from_key(private_key) if private_key is not None else Account.create()
    keyfile = Account.encrypt(account.key, _secret(password), kdf=kdf, iterations=iterations)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEYSTORE_MODE)
    except FileExistsError:
        raise KeystoreError(f"keystore {path} already exists; not overwriting it") from None
    with os.fdopen(fd, "w") as handle:
        json.dump(keyfile, handle)
    os.chmod(path, KEYSTORE_MODE)  # the umask cannot have widened it, but be explicit
    return str(account.address)
