"""The root of tokenbridge's exceptions and the narrow children the edges translate.

Every error a user can cause is a `TokenbridgeError` with a stable `code`; the HTTP
layer maps the code to a problem type and status, the CLI prints the message, and the
chain adapter maps each custom revert of the contracts to one of these.
"""

from __future__ import annotations


class TokenbridgeError(Exception):
    """Base of every error tokenbridge raises on purpose."""

    code: str = "tokenbridge-error"
    status: int = 400
    title: str = "Request failed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(TokenbridgeError):
    code = "invalid-input"
    status = 422
    title = "Invalid input"


class InvalidAmount(InvalidInput):
    code = "invalid-amount"
    title = "Invalid amount"


class NotFound(TokenbridgeError):
    code = "not-found"
    status = 404
    title = "Not found"


class Conflict(TokenbridgeError):
    code = "conflict"
    status = 409
    title = "Conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency-conflict"
    title = "Idempotency key reused with a different request"


class InsufficientFunds(Conflict):
    code = "insufficient-funds"
    title = "Insufficient funds"


class InvalidSignature(TokenbridgeError):
    code = "invalid-signature"
    status = 401
    title = "Invalid signature"


class Forbidden(TokenbridgeError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class Unauthorized(TokenbridgeError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class ConfigurationError(TokenbridgeError):
    code = "configuration-error"
    status = 500
    title = "Configuration error"


class ChainError(TokenbridgeError):
    """A call to the chain failed or reverted; `revert` names the custom error, if any."""

    code = "chain-error"
    status = 502
    title = "Chain call failed"

    def __init__(self, detail: str, revert: str | None = None) -> None:
        super().__init__(detail)
        self.revert = revert
