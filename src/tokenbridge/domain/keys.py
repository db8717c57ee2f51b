"""On-chain account keys: bytes32 values that hide who tipped whom.

key = keccak256(abi.encode("tokenbridge.account.v1", accountId, salt)) with a per-account
32-byte secret salt. The holder gets the salt in receipts and can recompute the key; the
chain only ever sees the key.
"""

from __future__ import annotations

import secrets

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from .errors import InvalidInput

KEY_DOMAIN = "tokenbridge.account.v1"
SALT_BYTES = 32


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def account_key(account_id: str, salt: bytes) -> bytes:
    if len(salt) != SALT_BYTES:
        raise InvalidInput(f"salt must be {SALT_BYTES} bytes, got {len(salt)}")
    return bytes(keccak(encode(["string", "string", "bytes32"], [KEY_DOMAIN, account_id, salt])))


def id_hash(external_id: str) -> bytes:
    """bytes32 form of a string id (gift id, payment id) as it appears in Merkle leaves."""
    return bytes(keccak(text=external_id))
