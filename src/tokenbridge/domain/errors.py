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


# --- ledger-specific errors -------------------------------------------------------------


class AccountRestricted(Forbidden):
    code = "account-restricted"
    title = "Account is restricted"


class LimitExceeded(Forbidden):
    code = "limit-exceeded"
    title = "Daily limit exceeded"


class OutstandingDebt(Conflict):
    code = "outstanding-debt"
    title = "Account has outstanding debt"


class IllegalTransition(Conflict):
    code = "illegal-transition"
    title = "Illegal state transition"


class UnbalancedPosting(TokenbridgeError):
    """A programming error: a posting whose debits do not equal its credits."""

    code = "unbalanced-posting"
    status = 500
    title = "Unbalanced posting"


class UnknownPayment(Conflict):
    """A refund/chargeback for a payment not (yet) credited; the provider should retry."""

    code = "unknown-payment"
    title = "Unknown payment"


class NotReady(TokenbridgeError):
    code = "not-ready"
    status = 503
    title = "Service not ready"


# --- deposits indexer -------------------------------------------------------------------


class LogRangeTooLarge(ChainError):
    """The node refused an `eth_getLogs` range (too many results, range too wide, timeout)."""

    code = "log-range-too-large"
    title = "Log range too large for the node"


class DeepReorg(ChainError):
    """A reorganisation replaced a block whose deposit was already credited; crediting stops."""

    code = "deep-reorg"
    title = "Reorganisation deeper than the confirmation depth"


# --- settlement and withdrawals (services/epochs.py, services/withdrawals.py) ------------


class SignatureExpired(InvalidInput):
    code = "signature-expired"
    title = "Signature deadline has passed"


class WrongSigner(Forbidden):
    """The EIP-712 signature is valid but not from the wallet that must sign it."""

    code = "wrong-signer"
    title = "Signed by the wrong wallet"


class WalletNotLinked(Conflict):
    code = "wallet-not-linked"
    title = "No wallet linked to this creator"


class ExceedsWithdrawable(InsufficientFunds):
    code = "exceeds-withdrawable"
    title = "Amount exceeds what is withdrawable now"


class BelowMinimumWithdrawal(InvalidAmount):
    code = "below-minimum-withdrawal"
    title = "Amount below the minimum withdrawal"


class WithdrawalCapExceeded(LimitExceeded):
    code = "withdrawal-cap-exceeded"
    title = "Daily withdrawal cap exceeded"


class SettlementUnavailable(NotReady):
    code = "settlement-unavailable"
    title = "Settlement is not configured on this server"
