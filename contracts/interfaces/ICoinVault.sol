// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ICoinVault
/// @notice Events, custom errors and external functions of the tokenbridge CoinVault: custody of the
/// CreatorCoin reserve, the on-chain split rate, epoch settlement of gifts, maturing creator earnings,
/// batched payouts, deposits, refund burns and liability commitments that anyone can verify.
/// @dev Leaf encodings and verify views follow docs/design/vault-interface.md exactly.
interface ICoinVault {
    // ------------------------------------------------------------------ types

    /// @notice Constructor parameters (a struct keeps the deploy call readable).
    /// @param name ERC-20 name of the CreatorCoin the vault deploys.
    /// @param symbol ERC-20 symbol.
    /// @param creatorBps initial creator share in basis points (<= 10000).
    /// @param splitDelay seconds between proposing and applying a new split rate (immutable).
    /// @param payoutDelay seconds after settlement before a credit becomes payable (at least; see
    /// `maturityGranularity`).
    /// @param maturityGranularity seconds per maturity cell G (> 0, immutable): a credit settled at t becomes
    /// payable at (t / G + 1) * G - 1 + payoutDelay, i.e. between payoutDelay and payoutDelay + G - 1 after t.
    /// @param mintLimit mint allowance per `mintPeriod` (<= type(uint96).max).
    /// @param mintPeriod seconds over which the mint allowance refills linearly (> 0).
    /// @param payoutLimit payout allowance per `payoutPeriod` (<= type(uint96).max).
    /// @param payoutPeriod seconds over which the payout allowance refills linearly (> 0).
    struct InitParams {
        string name;
        string symbol;
        uint16 creatorBps;
        uint32 splitDelay;
        uint32 payoutDelay;
        uint32 maturityGranularity;
        uint256 mintLimit;
        uint32 mintPeriod;
        uint256 payoutLimit;
        uint32 payoutPeriod;
    }

    // ------------------------------------------------------------------ events

    /// @dev Emitted when the admin proposes a new split rate, applicable from `effectiveAt`.
    event CreatorBpsProposed(uint16 currentBps, uint16 proposedBps, uint64 effectiveAt);
    /// @dev Emitted when a proposed split rate takes effect.
    event CreatorBpsApplied(uint16 previousBps, uint16 newBps);
    /// @dev Emitted when the admin withdraws a pending split-rate proposal.
    event CreatorBpsProposalCancelled(uint16 cancelledBps);
    /// @dev Emitted when the admin changes the maturity delay (applies at once to every credit not yet matured).
    event PayoutDelayChanged(uint32 previousDelay, uint32 newDelay);
    /// @dev Emitted when the admin changes the mint allowance.
    event MintLimitChanged(uint256 limit, uint32 period);
    /// @dev Emitted when the admin changes the payout allowance.
    event PayoutLimitChanged(uint256 limit, uint32 period);

    /// @dev Emitted when a batch of recharges is minted into the vault.
    event RechargesMinted(uint256 indexed batchId, uint256 amount, bytes32 rechargeRoot, uint256 count);

    /// @dev Emitted for each settled chunk of an epoch. The per-creator keys and gross amounts are in the
    /// transaction's calldata (`settleGifts` arguments); `creatorTotal + platformTotal == chunkGross`.
    event GiftsSettled(
        uint64 indexed epochId,
        uint256 indexed chunkIndex,
        bytes32 giftRoot,
        uint16 creatorBps,
        uint256 creators,
        uint256 chunkGross,
        uint256 creatorTotal,
        uint256 platformTotal
    );

    /// @dev Emitted when the admin voids the unmatured part of a creator's credit.
    event CreditVoided(bytes32 indexed creatorKey, uint256 amount);
    /// @dev Emitted when the admin voids the unmatured part of the platform's credit.
    event PlatformCreditVoided(uint256 amount);

    /// @dev Emitted once per payout batch. `ids` is the batch as sent; ids already paid were skipped and
    /// each has its own `PayoutSkipped`. Every paid id moved `amounts[i]` to `to[i]` (see the ERC-20
    /// `Transfer` events of the same transaction, in the same order).
    event PayoutBatchExecuted(uint256[] ids, uint256 paidCount, uint256 totalAmount);
    /// @dev Emitted for a payout id that was already paid (an at-least-once resend); nothing moved.
    event PayoutSkipped(uint256 indexed payoutId, bytes32 indexed creatorKey);
    /// @dev Emitted when the admin pays matured platform earnings out.
    event PlatformPaidOut(address indexed to, uint256 amount);

    /// @dev Emitted when `from` moves `amount` tokens into the vault for in-app account `accountKey`.
    event Deposited(bytes32 indexed accountKey, address indexed from, uint256 amount);

    /// @dev Emitted when the vault burns `amount` of its reserve for refunds/chargebacks.
    event RefundsBurned(uint256 indexed burnId, uint256 amount);

    /// @dev Emitted when the bridge commits the Merkle-sum root of all in-app balances for an epoch.
    event LiabilitiesCommitted(uint64 indexed epochId, bytes32 root, uint256 total);

    /// @dev Emitted when the pauser halts (or the admin resumes) CreatorCoin transfers through the vault.
    event CoinPaused(address indexed account);
    /// @dev See `CoinPaused`.
    event CoinUnpaused(address indexed account);

    // ------------------------------------------------------------------ errors

    /// @dev A split rate above 10000 basis points.
    error CoinVaultInvalidBps(uint256 bps);
    /// @dev `applyCreatorBps`/`cancelCreatorBps` without a pending proposal.
    error CoinVaultNoPendingBps();
    /// @dev `applyCreatorBps` before the proposal's effective time.
    error CoinVaultBpsNotReady(uint256 effectiveAt, uint256 nowTimestamp);
    /// @dev A rolling-allowance limit above type(uint96).max.
    error CoinVaultInvalidLimit(uint256 limit, uint256 max);
    /// @dev A rolling-allowance period of zero.
    error CoinVaultInvalidPeriod(uint256 period);
    /// @dev A zero amount where a positive one is required; `index` is the entry's position in a `payout`
    /// batch, 0 for single-amount calls.
    error CoinVaultZeroAmount(uint256 index);
    /// @dev The zero address where an account is required.
    error CoinVaultZeroAddress();
    /// @dev A deposit for the zero account key (it would be credited to no one).
    error CoinVaultZeroAccountKey();
    /// @dev Parallel arrays of different lengths: `expected` is the first array's length, `actual` the first
    /// other array that differs.
    error CoinVaultLengthMismatch(uint256 expected, uint256 actual);
    /// @dev A maturity granularity of zero seconds.
    error CoinVaultInvalidGranularity(uint256 granularity);
    /// @dev A value that does not fit its packed storage field.
    error CoinVaultAmountTooLarge(uint256 amount, uint256 max);

    /// @dev `mintForRecharges` with a batch id already minted.
    error CoinVaultBatchAlreadyMinted(uint256 batchId);
    /// @dev A mint above the rolling mint allowance available now.
    error CoinVaultMintAllowanceExceeded(uint256 available, uint256 requested);

    /// @dev A later chunk whose header (root, count, gross total) differs from the epoch's first chunk.
    error CoinVaultEpochHeaderMismatch(uint64 epochId);
    /// @dev A chunk that was already settled (a resend): the worker may treat it as done.
    error CoinVaultChunkAlreadySettled(uint64 epochId, uint256 chunkIndex);
    /// @dev A chunk ahead of the next expected one.
    error CoinVaultChunkOutOfOrder(uint64 epochId, uint256 expected, uint256 got);
    /// @dev Settled gross would exceed the epoch's declared gross total.
    error CoinVaultEpochGrossExceeded(uint64 epochId, uint256 grossTotal, uint256 settledGross);

    /// @dev `voidCredit` above the voidable part of a credit: min(unmatured, earned - paid), passed as `pending`.
    error CoinVaultVoidExceedsPending(bytes32 creatorKey, uint256 pending, uint256 requested);
    /// @dev A payout above what is matured and not yet paid for the creator key.
    error CoinVaultPayoutExceedsMatured(bytes32 creatorKey, uint256 matured, uint256 paid, uint256 requested);
    /// @dev A payout batch above the rolling payout allowance available now.
    error CoinVaultPayoutAllowanceExceeded(uint256 available, uint256 requested);
    /// @dev A platform payout above matured, unpaid platform earnings.
    error CoinVaultPlatformPayoutExceedsMatured(uint256 matured, uint256 paid, uint256 requested);

    /// @dev `burnForRefunds` with a burn id already used.
    error CoinVaultBurnAlreadyExecuted(uint256 burnId);

    /// @dev A liabilities commitment for an epoch not after the latest committed one.
    error CoinVaultLiabilityEpochNotIncreasing(uint64 epochId, uint64 latestEpochId);
    /// @dev A liabilities commitment whose epoch id jumps more than 2**32 past the latest (or, for the first
    /// commitment, lies above 2**32): one call must not be able to exhaust the id space.
    error CoinVaultLiabilityEpochTooFar(uint64 epochId, uint64 latestEpochId, uint256 maxEpochId);

    // ------------------------------------------------------------------ split rate (admin)

    /// @notice Current creator share in basis points (0..10000).
    function creatorBps() external view returns (uint16);
    /// @notice Seconds a proposed split rate must wait before it can be applied.
    function splitDelay() external view returns (uint32);
    /// @notice The pending proposal: `exists` false when none.
    function pendingCreatorBps() external view returns (bool exists, uint16 bps, uint64 effectiveAt);
    /// @notice Propose a new split rate (replaces any pending proposal and restarts the wait). Admin only.
    function proposeCreatorBps(uint16 newBps) external;
    /// @notice Apply the pending split rate once its effective time has come. Admin only.
    function applyCreatorBps() external;
    /// @notice Drop the pending split-rate proposal. Admin only.
    function cancelCreatorBps() external;

    // ------------------------------------------------------------------ allowances (admin)

    /// @notice Seconds between a credit's settlement and the moment it becomes payable (D; plus up to G - 1).
    function payoutDelay() external view returns (uint32);
    /// @notice Seconds per maturity cell (G, immutable): credits of one cell share one maturity time.
    function maturityGranularity() external view returns (uint32);
    /// @notice Change the maturity delay; applies to every credit not yet matured (lowering matures pending
    /// credits sooner, raising delays them). Admin only.
    function setPayoutDelay(uint32 newDelay) external;
    /// @notice Change the mint allowance (limit per period). Admin only.
    function setMintLimit(uint256 limit, uint32 period) external;
    /// @notice Change the payout allowance (limit per period). Admin only.
    function setPayoutLimit(uint256 limit, uint32 period) external;
    /// @notice Mint allowance: limit, period and what can be minted right now.
    function mintAllowance() external view returns (uint256 limit, uint32 period, uint256 available);
    /// @notice Payout allowance: limit, period and what can be paid out right now.
    function payoutAllowance() external view returns (uint256 limit, uint32 period, uint256 available);

    // ------------------------------------------------------------------ bridge operations

    /// @notice Mint `amount` into the vault for a batch of recharges. Bridge only; unique `batchId`.
    function mintForRecharges(uint256 batchId, uint256 amount, bytes32 rechargeRoot, uint256 count) external;
    /// @notice Whether `batchId` was minted.
    function isMinted(uint256 batchId) external view returns (bool);

    /// @notice Settle one chunk of an epoch's gifts. Bridge only; chunks in order from 0.
    function settleGifts(
        uint64 epochId,
        uint256 chunkIndex,
        bytes32 giftRoot,
        uint256 giftCount,
        uint256 grossTotal,
        bytes32[] calldata creatorKeys,
        uint256[] calldata grossAmounts
    ) external;

    /// @notice A settled epoch's stored fields (`settledAt == 0` when not settled).
    function epoch(uint64 epochId)
        external
        view
        returns (
            bytes32 giftRoot,
            uint256 giftCount,
            uint256 grossTotal,
            uint256 settledGross,
            uint16 bps,
            uint64 settledAt,
            uint256 chunksSettled
        );

    /// @notice Pay out matured creator earnings, one entry per withdrawal id. Bridge only.
    /// @dev An id already paid is skipped with `PayoutSkipped` (at-least-once resends are safe).
    function payout(
        uint256[] calldata ids,
        bytes32[] calldata creatorKeys,
        address[] calldata to,
        uint256[] calldata amounts
    ) external;
    /// @notice Whether payout id `id` was paid.
    function isPaidOut(uint256 id) external view returns (bool);

    /// @notice Burn `amount` of the vault's reserve for refunds/chargebacks. Bridge only; unique `burnId`.
    function burnForRefunds(uint256 burnId, uint256 amount) external;
    /// @notice Whether `burnId` was burned.
    function isBurned(uint256 burnId) external view returns (bool);

    /// @notice Commit the Merkle-sum root of all in-app balances and their total. Bridge only.
    function commitLiabilities(uint64 epochId, bytes32 root, uint256 total) external;

    // ------------------------------------------------------------------ anyone

    /// @notice Move `amount` of the caller's tokens into the vault for in-app account `accountKey`.
    function deposit(bytes32 accountKey, uint256 amount) external;
    /// @notice `deposit` with an ERC-2612 permit signature instead of a prior approve.
    function depositWithPermit(bytes32 accountKey, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;

    // ------------------------------------------------------------------ maturity (admin)

    /// @notice Void `amount` of a creator's unmatured credit (a fake or wrong settlement). Admin only.
    function voidCredit(bytes32 creatorKey, uint256 amount) external;
    /// @notice Void `amount` of the platform's unmatured credit. Admin only.
    function voidPlatformCredit(uint256 amount) external;
    /// @notice Pay matured platform earnings to `to`. Admin only; consumes the payout allowance.
    function payoutPlatform(address to, uint256 amount) external;

    // ------------------------------------------------------------------ earnings views

    /// @notice Total credited to `creatorKey` (after voids).
    function earned(bytes32 creatorKey) external view returns (uint256);
    /// @notice Total paid out to `creatorKey`.
    function paidOut(bytes32 creatorKey) external view returns (uint256);
    /// @notice Credited and past its maturity time.
    function matured(bytes32 creatorKey) external view returns (uint256);
    /// @notice `matured - paidOut`: what a payout may move now.
    function withdrawable(bytes32 creatorKey) external view returns (uint256);
    /// @notice Credited but not yet matured (voidable); 0 once matured.
    function pending(bytes32 creatorKey) external view returns (uint256);
    /// @notice A creator's credit: totals, what is unmatured now, and when the newest tracked credit matures
    /// under the current delay (0 when no credit is tracked in a bucket).
    function creditOf(bytes32 creatorKey)
        external
        view
        returns (uint256 earnedAmount, uint256 paidAmount, uint256 pendingAmount, uint64 maturesAt);
    /// @notice A creator's two maturity buckets as stored (amounts may already be matured) and the time each
    /// matures under the current delay (0 for an empty bucket).
    function creditBuckets(bytes32 creatorKey)
        external
        view
        returns (uint256 newest, uint64 newestMaturesAt, uint256 older, uint64 olderMaturesAt);
    /// @notice The platform's two maturity buckets, as `creditBuckets`.
    function platformCreditBuckets()
        external
        view
        returns (uint256 newest, uint64 newestMaturesAt, uint256 older, uint64 olderMaturesAt);
    /// @notice Total platform share credited (after voids).
    function platformEarned() external view returns (uint256);
    /// @notice Platform earnings paid out.
    function platformPaidOut() external view returns (uint256);
    /// @notice Platform earnings matured.
    function platformMatured() external view returns (uint256);
    /// @notice Platform earnings not yet matured.
    function platformPending() external view returns (uint256);

    // ------------------------------------------------------------------ reserve and verification views

    /// @notice The CreatorCoin this vault deployed and controls.
    function coin() external view returns (address);
    /// @notice The vault's token balance (the reserve).
    function reserve() external view returns (uint256);
    /// @notice The latest liabilities commitment (`committedAt == 0` when none).
    function latestLiabilities() external view returns (uint64 epochId, bytes32 root, uint256 total, uint64 committedAt);
    /// @notice The liabilities commitment of `epochId` (`committedAt == 0` when none).
    function liabilities(uint64 epochId) external view returns (bytes32 root, uint256 total, uint64 committedAt);
    /// @notice True iff a commitment exists and `reserve() >= its total`.
    function solvent() external view returns (bool);
    /// @notice True iff the epoch is settled, the gift leaf is in its root and its split matches the epoch's bps.
    function verifyGift(
        uint64 epochId,
        bytes32 giftId,
        bytes32 fromKey,
        bytes32 creatorKey,
        uint256 gross,
        uint256 creatorAmount,
        uint256 platformAmount,
        bytes32[] calldata proof
    ) external view returns (bool);
    /// @notice True iff the balance leaf with its Merkle-sum proof recomputes the epoch's committed root and total.
    function verifyLiability(
        uint64 epochId,
        bytes32 accountKey,
        uint256 balance,
        uint256 index,
        bytes32[] calldata siblingHashes,
        uint256[] calldata siblingSums
    ) external view returns (bool);

    // ------------------------------------------------------------------ pause

    /// @notice Halt mint, settle, payout, deposit and burn. Pauser only.
    function pause() external;
    /// @notice Resume. Admin only: a stolen pauser key cannot undo an incident response.
    function unpause() external;
    /// @notice Halt every CreatorCoin transfer (holders included). Pauser only.
    function pauseCoin() external;
    /// @notice Resume CreatorCoin transfers. Admin only.
    function unpauseCoin() external;
}
