// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {CreatorCoin} from "./CreatorCoin.sol";
import {ICoinVault} from "./interfaces/ICoinVault.sol";

/// @title CoinVault
/// @notice Custody and settlement for tokenbridge: holds the CreatorCoin reserve, enforces the split rate,
/// records epoch gift roots, credits creator earnings that mature after `payoutDelay`, pays them out in
/// batches under a rolling allowance, takes deposits, burns for refunds, and stores liability commitments
/// that anyone can check with `verifyGift`, `verifyLiability` and `solvent`.
/// @dev Roles (see contracts/README.md): DEFAULT_ADMIN_ROLE (admin), BRIDGE_ROLE (the worker's hot key),
/// PAUSER_ROLE. The vault deploys its CreatorCoin in the constructor and is its only minter.
///
/// WARNING: `solvent()` compares the reserve with the latest *committed* liabilities total. It is only as
/// fresh as the bridge's last `commitLiabilities`; verifiers should also check `latestLiabilities().committedAt`.
contract CoinVault is ICoinVault, AccessControl, Pausable {
    /// @notice Role of the worker's hot key: mint, settle, payout, burn, commit.
    bytes32 public constant BRIDGE_ROLE = keccak256("BRIDGE_ROLE");
    /// @notice Role that can pause (never unpause) the vault and the coin.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    uint256 private constant BPS_DENOMINATOR = 10_000;

    // ---- Maturity: two buckets on a fixed time grid (AUDIT-3).
    // Time is cut into cells of `maturityGranularity` (G) seconds: cell(t) = t / G. Every credit lands in
    // the bucket of the cell it was settled in; a bucket assigned cell c matures at (c + 1) * G - 1 + D,
    // D = the *current* `payoutDelay`. A credit settled at t in cell c therefore waits between D and
    // D + G - 1 seconds (never less than D: t <= (c + 1) * G - 1). Equivalently, with
    //   maturedBelow(now) = now + 1 >= D ? (now + 1 - D) / G : 0,
    // a bucket of cell c is matured iff c < maturedBelow(now) (one division per call, not per key).
    //
    // Creator slot (one per key; payout and settle touch only this slot):
    //   bits   0.. 55  earned   total credited after voids                          (uint56)
    //   bits  56..111  paid     total paid out                                      (uint56)
    //   bits 112..159  cur      amount in the newest bucket                         (uint48)
    //   bits 160..207  prev     amount in the older bucket                          (uint48)
    //   bits 208..239  curCell  cell of `cur` (the cell of the key's latest credit)  (uint32, t < 2**32)
    //   bits 240..255  prevGap  curCell - cell of `prev`, saturated at 65535        (uint16)
    // unmatured = (curCell >= mb ? cur : 0) + (curCell - prevGap >= mb ? prev : 0), mb = maturedBelow(now);
    // matured = earned - unmatured. Invariants: cur + prev <= earned; paid <= earned; prev != 0 implies
    // prevGap >= 1, so prev's cell < cur's cell and prev matures no later than cur (matured buckets are a
    // prefix). Saturating prevGap assigns prev a *later* cell than its real one: maturity only moves later.
    //
    // Bucket rule for a credit of `amount` > 0 in cell c (c >= curCell: time never goes back):
    //   1. c == curCell                         -> cur += amount.
    //   2. c > curCell and cur is matured        -> both buckets are matured: drop them (their amounts stay
    //                                              in earned, now unconditionally matured); cur = amount @ c.
    //   3. c > curCell, prev matured or empty    -> rotate: prev = cur @ curCell; cur = amount @ c.
    //   4. c > curCell, both unmatured           -> merge: cur += amount and moves to cell c (prev keeps its
    //                                              cell). Possible only when D > G.
    // Proof sketch (safety: nothing matures before D). Invariant: each credit sits in a bucket whose assigned
    // cell is >= its own settlement cell, or has been dropped. Rules 1 and 3 assign exact cells; rule 4 moves
    // cur later; the prevGap saturation moves prev later; rules 2 and 3 drop only buckets matured under the
    // current D. As maturity is monotone in the cell, a credit is payable only once a bucket of cell >= its own
    // cell is matured, i.e. at or after its own (c + 1) * G - 1 + D >= t + D. A bridge credit never moves an
    // existing credit to an earlier cell, so it can never shorten another credit's maturity (AUDIT-1); only the
    // admin's `setPayoutDelay` does, for every tracked credit at once.
    // Liveness (why not "merge prev into cur's cell" in rule 4): prev's cell is fixed while it waits, so it
    // matures D (+ G) after its cell and the next credit rotates cur into prev. A credit therefore matures at
    // most about 2 * D + 2 * G after settlement even if its key is credited in every cell, provided
    // D < 65535 * G (prevGap does not saturate). Folding prev forward instead would starve a key credited in
    // every cell whenever D > G, which is AUDIT-3 again (the platform with D = 1 day, G = 1 hour).
    uint256 private constant MASK56 = (1 << 56) - 1;
    uint256 private constant MASK48 = (1 << 48) - 1;
    uint256 private constant MASK32 = (1 << 32) - 1;
    uint256 private constant MAX_GAP = (1 << 16) - 1;
    uint256 private constant PAID_SHIFT = 56;
    uint256 private constant CUR_SHIFT = 112;
    uint256 private constant PREV_SHIFT = 160;
    uint256 private constant CELL_SHIFT = 208;
    uint256 private constant GAP_SHIFT = 240;
    uint256 private constant PAID_FIELD = MASK56 << PAID_SHIFT;

    // Platform credit, two slots (touched once per chunk and per platform payout, so width beats gas):
    //   _platformTotals:  bits 0..127 earned (uint128) | bits 128..255 paid (uint128)
    //   _platformBuckets: bits 0..95 cur (uint96) | 96..191 prev (uint96) | 192..223 curCell (uint32)
    //                     | 224..255 prevGap (uint32, saturated)
    // Same bucket rules as a creator.
    uint256 private constant MASK128 = (1 << 128) - 1;
    uint256 private constant P_PREV_SHIFT = 96;
    uint256 private constant P_CELL_SHIFT = 192;
    uint256 private constant P_GAP_SHIFT = 224;
    uint256 private constant P_MAX_GAP = (1 << 32) - 1;

    // Liability epochs: each commitment's id must exceed the latest and by at most this much (AUDIT-2), so no
    // single commitment can end reporting (reaching 2**64 - 1 takes 2**32 commitments).
    uint256 private constant MAX_LIABILITY_EPOCH_JUMP = 1 << 32;

    // Packed rolling allowance (xERC20 / ERC-7281 style), one slot each for mint and payout:
    //   bits   0.. 95  limit        allowance per period                       (uint96)
    //   bits  96..191  available    allowance left at `lastUpdated`            (uint96)
    //   bits 192..231  lastUpdated  unix time of the last consume/limit change (uint40)
    //   bits 232..255  period       seconds to refill from 0 to `limit`        (uint24, <= 194 days)
    uint256 private constant MASK96 = (1 << 96) - 1;
    uint256 private constant MASK40 = (1 << 40) - 1;
    uint256 private constant MAX_PERIOD = (1 << 24) - 1;

    struct Epoch {
        bytes32 giftRoot; // slot 0
        uint128 grossTotal; // slot 1
        uint128 settledGross;
        uint64 giftCount; // slot 2
        uint40 settledAt;
        uint16 bps;
        uint32 chunksSettled;
    }

    struct Commitment {
        bytes32 root;
        uint192 total;
        uint64 committedAt;
    }

    CreatorCoin private immutable _coin;

    /// @inheritdoc ICoinVault
    uint32 public immutable splitDelay;
    /// @inheritdoc ICoinVault
    uint32 public immutable maturityGranularity;

    // One slot: the split rate, its pending change, and the maturity delay.
    /// @inheritdoc ICoinVault
    uint16 public creatorBps;
    uint16 private _pendingBps;
    uint64 private _pendingBpsAt; // 0 = no proposal
    /// @inheritdoc ICoinVault
    uint32 public payoutDelay;
    uint64 private _latestLiabilityEpoch;

    uint256 private _mintWindow;
    uint256 private _payoutWindow;
    uint256 private _platformTotals;
    uint256 private _platformBuckets;

    mapping(bytes32 creatorKey => uint256 packed) private _credits;
    mapping(uint64 epochId => Epoch) private _epochs;
    mapping(uint64 epochId => Commitment) private _commitments;
    // Replay guards: bit (id & 255) of word (id >> 8), as in Uniswap's MerkleDistributor.
    mapping(uint256 word => uint256 bits) private _mintedBitmap;
    mapping(uint256 word => uint256 bits) private _paidBitmap;
    mapping(uint256 word => uint256 bits) private _burnedBitmap;

    /// @param admin holder of DEFAULT_ADMIN_ROLE (a multisig/timelock in production).
    /// @param bridge holder of BRIDGE_ROLE (the worker's hot key).
    /// @param pauser holder of PAUSER_ROLE.
    /// @param params name/symbol, split rate and delays, mint and payout allowances.
    constructor(address admin, address bridge, address pauser, InitParams memory params) {
        if (admin == address(0) || bridge == address(0) || pauser == address(0)) revert CoinVaultZeroAddress();
        if (params.creatorBps > BPS_DENOMINATOR) revert CoinVaultInvalidBps(params.creatorBps);
        if (params.maturityGranularity == 0) revert CoinVaultInvalidGranularity(params.maturityGranularity);
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(BRIDGE_ROLE, bridge);
        _grantRole(PAUSER_ROLE, pauser);
        splitDelay = params.splitDelay;
        maturityGranularity = params.maturityGranularity;
        creatorBps = params.creatorBps;
        payoutDelay = params.payoutDelay;
        _mintWindow = _newWindow(0, params.mintLimit, params.mintPeriod);
        _payoutWindow = _newWindow(0, params.payoutLimit, params.payoutPeriod);
        _coin = new CreatorCoin(params.name, params.symbol);
        emit CreatorBpsApplied(0, params.creatorBps);
        emit PayoutDelayChanged(0, params.payoutDelay);
        emit MintLimitChanged(params.mintLimit, params.mintPeriod);
        emit PayoutLimitChanged(params.payoutLimit, params.payoutPeriod);
    }

    // =================================================================== split rate

    /// @inheritdoc ICoinVault
    function pendingCreatorBps() external view returns (bool exists, uint16 bps, uint64 effectiveAt) {
        effectiveAt = _pendingBpsAt;
        exists = effectiveAt != 0;
        bps = _pendingBps;
    }

    /// @inheritdoc ICoinVault
    /// @dev NOTE: a new proposal replaces a pending one and restarts the wait.
    function proposeCreatorBps(uint16 newBps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newBps > BPS_DENOMINATOR) revert CoinVaultInvalidBps(newBps);
        uint64 effectiveAt = uint64(block.timestamp) + splitDelay;
        _pendingBps = newBps;
        _pendingBpsAt = effectiveAt;
        emit CreatorBpsProposed(creatorBps, newBps, effectiveAt);
    }

    /// @inheritdoc ICoinVault
    function applyCreatorBps() external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint64 effectiveAt = _pendingBpsAt;
        if (effectiveAt == 0) revert CoinVaultNoPendingBps();
        if (block.timestamp < effectiveAt) revert CoinVaultBpsNotReady(effectiveAt, block.timestamp);
        uint16 previous = creatorBps;
        uint16 next = _pendingBps;
        creatorBps = next;
        _pendingBps = 0;
        _pendingBpsAt = 0;
        emit CreatorBpsApplied(previous, next);
    }

    /// @inheritdoc ICoinVault
    function cancelCreatorBps() external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (_pendingBpsAt == 0) revert CoinVaultNoPendingBps();
        uint16 cancelled = _pendingBps;
        _pendingBps = 0;
        _pendingBpsAt = 0;
        emit CreatorBpsProposalCancelled(cancelled);
    }

    // =================================================================== allowances

    /// @inheritdoc ICoinVault
    /// @dev Applies at once to every credit still in a bucket (see the maturity comment at the constants):
    /// lowering it matures pending credits sooner, raising it delays them, including tracked credits that had
    /// already matured (paid amounts are never taken back: `withdrawable` floors at 0 and `voidCredit` cannot
    /// void below `paidOut`). Only the admin can do this; no bridge call can move a credit's maturity earlier.
    function setPayoutDelay(uint32 newDelay) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint32 previous = payoutDelay;
        payoutDelay = newDelay;
        emit PayoutDelayChanged(previous, newDelay);
    }

    /// @inheritdoc ICoinVault
    function setMintLimit(uint256 limit, uint32 period) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _mintWindow = _newWindow(_mintWindow, limit, period);
        emit MintLimitChanged(limit, period);
    }

    /// @inheritdoc ICoinVault
    function setPayoutLimit(uint256 limit, uint32 period) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _payoutWindow = _newWindow(_payoutWindow, limit, period);
        emit PayoutLimitChanged(limit, period);
    }

    /// @inheritdoc ICoinVault
    function mintAllowance() external view returns (uint256 limit, uint32 period, uint256 available) {
        return _windowView(_mintWindow);
    }

    /// @inheritdoc ICoinVault
    /// @dev NOTE: refund burns consume this allowance too (it bounds every outflow of the reserve).
    function payoutAllowance() external view returns (uint256 limit, uint32 period, uint256 available) {
        return _windowView(_payoutWindow);
    }

    // =================================================================== mint

    /// @inheritdoc ICoinVault
    function mintForRecharges(uint256 batchId, uint256 amount, bytes32 rechargeRoot, uint256 count)
        external
        onlyRole(BRIDGE_ROLE)
        whenNotPaused
    {
        if (!_setBit(_mintedBitmap, batchId)) revert CoinVaultBatchAlreadyMinted(batchId);
        if (amount == 0) revert CoinVaultZeroAmount(0);
        _mintWindow = _consume(_mintWindow, amount, true);
        _coin.mint(address(this), amount);
        emit RechargesMinted(batchId, amount, rechargeRoot, count);
    }

    /// @inheritdoc ICoinVault
    function isMinted(uint256 batchId) external view returns (bool) {
        return _getBit(_mintedBitmap, batchId);
    }

    // =================================================================== settle

    /// @inheritdoc ICoinVault
    /// @dev The first chunk (index 0) stores the epoch header and the split rate in force; later chunks must
    /// repeat the header and come in order, and use the stored rate even if the rate changed meanwhile.
    /// Each creator gets `gross * bps / 10000`; the chunk's remainder accrues to the platform. Credits land in
    /// the maturity bucket of this block's time cell (rules at the constants); a zero share (gross 0, or a
    /// share that rounds to 0) is skipped and touches nothing (AUDIT-4). Every entry is checked against the
    /// epoch's remaining gross before any arithmetic, so an oversized gross reverts with
    /// `CoinVaultEpochGrossExceeded`, never an overflow panic (AUDIT-5).
    /// Per-creator amounts are not logged (gas): they are this call's calldata, and `GiftsSettled` carries
    /// the chunk totals an indexer reconciles them against.
    function settleGifts(
        uint64 epochId,
        uint256 chunkIndex,
        bytes32 giftRoot,
        uint256 giftCount,
        uint256 grossTotal,
        bytes32[] calldata creatorKeys,
        uint256[] calldata grossAmounts
    ) external onlyRole(BRIDGE_ROLE) whenNotPaused {
        if (creatorKeys.length != grossAmounts.length) {
            revert CoinVaultLengthMismatch(creatorKeys.length, grossAmounts.length);
        }
        Epoch storage e = _epochs[epochId];
        uint256 bps = _openChunk(e, epochId, chunkIndex, giftRoot, giftCount, grossTotal);
        uint256 cell = block.timestamp / maturityGranularity;
        if (cell > MASK32) revert CoinVaultAmountTooLarge(cell, MASK32);
        uint256 mb = _maturedBelow();
        uint256 room = uint256(e.grossTotal) - e.settledGross; // settledGross <= grossTotal (invariant)
        (uint256 chunkGross, uint256 creatorTotal) =
            _creditCreators(epochId, room, creatorKeys, grossAmounts, bps, cell, mb);
        _closeChunk(e, epochId, chunkIndex, creatorKeys.length, chunkGross, creatorTotal, cell, mb);
    }

    /// @inheritdoc ICoinVault
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
        )
    {
        Epoch storage e = _epochs[epochId];
        return (e.giftRoot, e.giftCount, e.grossTotal, e.settledGross, e.bps, e.settledAt, e.chunksSettled);
    }

    // =================================================================== maturity

    /// @inheritdoc ICoinVault
    /// @dev Works while paused: voiding a fake settlement is part of incident response.
    /// Removes unmatured credit newest bucket first; never more than `earned - paidOut` (so paid <= earned
    /// always, and matured is unchanged by a void).
    function voidCredit(bytes32 creatorKey, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 credit = _credits[creatorKey];
        (uint256 cur, uint256 prev) = _takeUnmatured(
            (credit >> CUR_SHIFT) & MASK48,
            (credit >> PREV_SHIFT) & MASK48,
            (credit >> CELL_SHIFT) & MASK32,
            credit >> GAP_SHIFT,
            credit & MASK56,
            (credit >> PAID_SHIFT) & MASK56,
            amount,
            creatorKey
        );
        // amount <= unmatured <= earned: earned - amount cannot borrow.
        _credits[creatorKey] = (credit & ~(MASK56 | (MASK48 << CUR_SHIFT) | (MASK48 << PREV_SHIFT)))
            | ((credit & MASK56) - amount) | (cur << CUR_SHIFT) | (prev << PREV_SHIFT);
        emit CreditVoided(creatorKey, amount);
    }

    /// @inheritdoc ICoinVault
    /// @dev Same rules as `voidCredit`, on the platform's two-slot credit.
    function voidPlatformCredit(uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 totals = _platformTotals;
        uint256 b = _platformBuckets;
        (uint256 cur, uint256 prev) = _takeUnmatured(
            b & MASK96,
            (b >> P_PREV_SHIFT) & MASK96,
            (b >> P_CELL_SHIFT) & MASK32,
            b >> P_GAP_SHIFT,
            totals & MASK128,
            totals >> 128,
            amount,
            bytes32(0)
        );
        _platformTotals = totals - amount; // amount <= earned (low half): no borrow from `paid`
        _platformBuckets = (b & ~(MASK96 | (MASK96 << P_PREV_SHIFT))) | cur | (prev << P_PREV_SHIFT);
        emit PlatformCreditVoided(amount);
    }

    // =================================================================== payout

    /// @inheritdoc ICoinVault
    /// @dev Per payout: one bitmap bit, one read-modify-write of the creator's packed slot, one ERC-20
    /// transfer leg inside a single `vaultTransferBatch` call; one `PayoutBatchExecuted` event per batch.
    /// The whole batch (minus skipped ids) counts against the payout allowance. Any other failure (an
    /// amount above matured earnings, a zero address, a paused coin) reverts the whole batch.
    function payout(
        uint256[] calldata ids,
        bytes32[] calldata creatorKeys,
        address[] calldata to,
        uint256[] calldata amounts
    ) external onlyRole(BRIDGE_ROLE) whenNotPaused {
        uint256 n = ids.length;
        if (creatorKeys.length != n) revert CoinVaultLengthMismatch(n, creatorKeys.length);
        if (to.length != n) revert CoinVaultLengthMismatch(n, to.length);
        if (amounts.length != n) revert CoinVaultLengthMismatch(n, amounts.length);
        uint256 mb = _maturedBelow();
        uint256 total;
        uint256 skipped;
        uint256[] memory skipBits; // bit i set = entry i skipped; allocated on the first skip only
        // The bitmap word of the current id stays in memory while consecutive ids share it (ids are
        // usually sequential) and is written back when the word changes and after the loop.
        // type(uint256).max is never a word index (ids >> 8 < 2**248), so it marks "nothing cached".
        uint256 cachedWord = type(uint256).max;
        uint256 cachedBits;
        for (uint256 i; i < n; ) {
            uint256 id = ids[i];
            if (id >> 8 != cachedWord) {
                if (cachedWord != type(uint256).max) _paidBitmap[cachedWord] = cachedBits;
                cachedWord = id >> 8;
                cachedBits = _paidBitmap[cachedWord];
            }
            uint256 mask = 1 << (id & 0xff);
            if (cachedBits & mask == 0) {
                cachedBits |= mask;
                uint256 amount = amounts[i];
                if (amount == 0) revert CoinVaultZeroAmount(i);
                _debitCredit(creatorKeys[i], amount, mb);
                // unchecked: each amount <= matured < 2**56 and a batch has far fewer than 2**170 entries.
                unchecked {
                    total += amount;
                }
            } else {
                if (skipped == 0) skipBits = new uint256[]((n >> 8) + 1);
                skipBits[i >> 8] |= 1 << (i & 0xff);
                // unchecked: skipped <= i < n.
                unchecked {
                    ++skipped;
                }
                emit PayoutSkipped(id, creatorKeys[i]);
            }
            // unchecked: i < n, a calldata array length.
            unchecked {
                ++i;
            }
        }
        if (cachedWord != type(uint256).max) _paidBitmap[cachedWord] = cachedBits;
        if (total != 0) {
            _payoutWindow = _consume(_payoutWindow, total, false);
            if (skipped == 0) {
                _coin.vaultTransferBatch(to, amounts);
            } else {
                _transferUnskipped(to, amounts, skipBits, n - skipped);
            }
        }
        emit PayoutBatchExecuted(ids, n - skipped, total);
    }

    /// @inheritdoc ICoinVault
    function isPaidOut(uint256 id) external view returns (bool) {
        return _getBit(_paidBitmap, id);
    }

    /// @inheritdoc ICoinVault
    /// @dev Consumes the payout allowance like every other outflow of the reserve.
    function payoutPlatform(address to, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) whenNotPaused {
        if (amount == 0) revert CoinVaultZeroAmount(0);
        uint256 totals = _platformTotals;
        uint256 paid = totals >> 128;
        uint256 maturedAmt = (totals & MASK128) - _platformUnmatured(_maturedBelow());
        if (amount > maturedAmt || paid > maturedAmt - amount) {
            revert CoinVaultPlatformPayoutExceedsMatured(maturedAmt, paid, amount);
        }
        _payoutWindow = _consume(_payoutWindow, amount, false);
        // unchecked: paid + amount <= matured <= earned < 2**128.
        unchecked {
            _platformTotals = totals + (amount << 128);
        }
        _coin.transfer(to, amount);
        emit PlatformPaidOut(to, amount);
    }

    // =================================================================== deposit

    /// @inheritdoc ICoinVault
    /// @dev The caller must have approved the vault for `amount`.
    function deposit(bytes32 accountKey, uint256 amount) external whenNotPaused {
        _deposit(accountKey, amount);
    }

    /// @inheritdoc ICoinVault
    /// @dev The permit is tried and its failure ignored (someone may have front-run the same signature);
    /// the transfer then succeeds iff the allowance is in place.
    function depositWithPermit(bytes32 accountKey, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        whenNotPaused
    {
        try IERC20Permit(address(_coin)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(accountKey, amount);
    }

    // =================================================================== burn

    /// @inheritdoc ICoinVault
    /// @dev Consumes the payout allowance, so a stolen bridge key cannot burn the reserve faster than it
    /// could pay it out.
    function burnForRefunds(uint256 burnId, uint256 amount) external onlyRole(BRIDGE_ROLE) whenNotPaused {
        if (!_setBit(_burnedBitmap, burnId)) revert CoinVaultBurnAlreadyExecuted(burnId);
        if (amount == 0) revert CoinVaultZeroAmount(0);
        _payoutWindow = _consume(_payoutWindow, amount, false);
        _coin.burn(amount);
        emit RefundsBurned(burnId, amount);
    }

    /// @inheritdoc ICoinVault
    function isBurned(uint256 burnId) external view returns (bool) {
        return _getBit(_burnedBitmap, burnId);
    }

    // =================================================================== liabilities

    /// @inheritdoc ICoinVault
    /// @dev Not paused by `pause()`: reporting keeps going during an incident. Epoch ids strictly increase, by
    /// at most 2**32 per commitment (the first one: at most 2**32), so one call (e.g. from a stolen bridge key)
    /// cannot jump to type(uint64).max and end reporting (AUDIT-2); exhausting the id space would take 2**32
    /// commitments. After a key compromise the honest worker continues above `latestLiabilities().epochId`.
    function commitLiabilities(uint64 epochId, bytes32 root, uint256 total) external onlyRole(BRIDGE_ROLE) {
        uint64 latest = _latestLiabilityEpoch;
        if (_commitments[latest].committedAt != 0 && epochId <= latest) {
            revert CoinVaultLiabilityEpochNotIncreasing(epochId, latest);
        }
        uint256 maxEpochId = uint256(latest) + MAX_LIABILITY_EPOCH_JUMP;
        if (epochId > maxEpochId) revert CoinVaultLiabilityEpochTooFar(epochId, latest, maxEpochId);
        if (total > type(uint192).max) revert CoinVaultAmountTooLarge(total, type(uint192).max);
        _commitments[epochId] = Commitment(root, uint192(total), uint64(block.timestamp));
        _latestLiabilityEpoch = epochId;
        emit LiabilitiesCommitted(epochId, root, total);
    }

    /// @inheritdoc ICoinVault
    function latestLiabilities() external view returns (uint64 epochId, bytes32 root, uint256 total, uint64 committedAt) {
        epochId = _latestLiabilityEpoch;
        Commitment storage c = _commitments[epochId];
        return (epochId, c.root, c.total, c.committedAt);
    }

    /// @inheritdoc ICoinVault
    function liabilities(uint64 epochId) external view returns (bytes32 root, uint256 total, uint64 committedAt) {
        Commitment storage c = _commitments[epochId];
        return (c.root, c.total, c.committedAt);
    }

    /// @inheritdoc ICoinVault
    function solvent() external view returns (bool) {
        Commitment storage c = _commitments[_latestLiabilityEpoch];
        return c.committedAt != 0 && _coin.balanceOf(address(this)) >= c.total;
    }

    /// @inheritdoc ICoinVault
    function reserve() external view returns (uint256) {
        return _coin.balanceOf(address(this));
    }

    /// @inheritdoc ICoinVault
    function coin() external view returns (address) {
        return address(_coin);
    }

    // =================================================================== verification

    /// @inheritdoc ICoinVault
    /// @dev leaf = keccak256(bytes.concat(keccak256(abi.encode(giftId, fromKey, creatorKey, gross,
    /// creatorAmount, platformAmount)))) (OpenZeppelin StandardMerkleTree); never reverts on bad input.
    function verifyGift(
        uint64 epochId,
        bytes32 giftId,
        bytes32 fromKey,
        bytes32 creatorKey,
        uint256 gross,
        uint256 creatorAmount,
        uint256 platformAmount,
        bytes32[] calldata proof
    ) external view returns (bool) {
        Epoch storage e = _epochs[epochId];
        if (e.settledAt == 0) return false;
        // mulDiv: no overflow for any gross; the result is <= gross, so the subtraction below is safe.
        uint256 expectedCreator = Math.mulDiv(gross, e.bps, BPS_DENOMINATOR);
        if (creatorAmount != expectedCreator || platformAmount != gross - expectedCreator) return false;
        bytes32 leaf = keccak256(
            bytes.concat(keccak256(abi.encode(giftId, fromKey, creatorKey, gross, creatorAmount, platformAmount)))
        );
        return MerkleProof.verifyCalldata(proof, e.giftRoot, leaf);
    }

    /// @inheritdoc ICoinVault
    /// @dev Merkle-sum tree of docs/design/vault-interface.md. Range checks: balance < 2**64 and each
    /// sibling sum at level i < 2**(64+i) (what a subtree of 2**i leaves below 2**64 can hold); the
    /// index must address a leaf of a tree of that height. Never reverts on bad input.
    function verifyLiability(
        uint64 epochId,
        bytes32 accountKey,
        uint256 balance,
        uint256 index,
        bytes32[] calldata siblingHashes,
        uint256[] calldata siblingSums
    ) external view returns (bool) {
        Commitment storage c = _commitments[epochId];
        if (c.committedAt == 0) return false;
        uint256 height = siblingHashes.length;
        if (siblingSums.length != height || height > 64) return false;
        if (balance >> 64 != 0 || index >> height != 0) return false;
        bytes32 node = keccak256(bytes.concat(keccak256(abi.encode(accountKey, balance))));
        uint256 sum = balance;
        for (uint256 i; i < height; ++i) {
            uint256 siblingSum = siblingSums[i];
            if (siblingSum >> (64 + i) != 0) return false;
            node = (index >> i) & 1 == 1
                ? keccak256(abi.encode(siblingHashes[i], siblingSum, node, sum))
                : keccak256(abi.encode(node, sum, siblingHashes[i], siblingSum));
            sum += siblingSum; // < 2**(65+i) <= 2**129: cannot overflow
        }
        return node == c.root && sum == c.total;
    }

    // =================================================================== earnings views

    /// @inheritdoc ICoinVault
    function earned(bytes32 creatorKey) external view returns (uint256) {
        return _credits[creatorKey] & MASK56;
    }

    /// @inheritdoc ICoinVault
    function paidOut(bytes32 creatorKey) external view returns (uint256) {
        return (_credits[creatorKey] >> PAID_SHIFT) & MASK56;
    }

    /// @inheritdoc ICoinVault
    function matured(bytes32 creatorKey) external view returns (uint256) {
        uint256 credit = _credits[creatorKey];
        return (credit & MASK56) - _unmatured(credit, _maturedBelow());
    }

    /// @inheritdoc ICoinVault
    function withdrawable(bytes32 creatorKey) external view returns (uint256) {
        uint256 credit = _credits[creatorKey];
        uint256 maturedAmt = (credit & MASK56) - _unmatured(credit, _maturedBelow());
        uint256 paid = (credit >> PAID_SHIFT) & MASK56;
        return maturedAmt > paid ? maturedAmt - paid : 0; // paid > matured only after the admin raised D
    }

    /// @inheritdoc ICoinVault
    function pending(bytes32 creatorKey) external view returns (uint256) {
        return _unmatured(_credits[creatorKey], _maturedBelow());
    }

    /// @inheritdoc ICoinVault
    function creditOf(bytes32 creatorKey)
        external
        view
        returns (uint256 earnedAmount, uint256 paidAmount, uint256 pendingAmount, uint64 maturesAt)
    {
        uint256 credit = _credits[creatorKey];
        uint256 cur = (credit >> CUR_SHIFT) & MASK48;
        uint256 prev = (credit >> PREV_SHIFT) & MASK48;
        uint256 curCell = (credit >> CELL_SHIFT) & MASK32;
        uint256 gap = credit >> GAP_SHIFT;
        if (cur != 0) {
            maturesAt = _maturesAt(curCell);
        } else if (prev != 0) {
            maturesAt = _maturesAt(curCell - gap);
        }
        return (
            credit & MASK56,
            (credit >> PAID_SHIFT) & MASK56,
            _unmaturedOf(cur, prev, curCell, gap, _maturedBelow()),
            maturesAt
        );
    }

    /// @inheritdoc ICoinVault
    function creditBuckets(bytes32 creatorKey)
        external
        view
        returns (uint256 newest, uint64 newestMaturesAt, uint256 older, uint64 olderMaturesAt)
    {
        uint256 credit = _credits[creatorKey];
        uint256 curCell = (credit >> CELL_SHIFT) & MASK32;
        newest = (credit >> CUR_SHIFT) & MASK48;
        older = (credit >> PREV_SHIFT) & MASK48;
        if (newest != 0) newestMaturesAt = _maturesAt(curCell);
        if (older != 0) olderMaturesAt = _maturesAt(curCell - (credit >> GAP_SHIFT));
    }

    /// @inheritdoc ICoinVault
    function platformCreditBuckets()
        external
        view
        returns (uint256 newest, uint64 newestMaturesAt, uint256 older, uint64 olderMaturesAt)
    {
        uint256 b = _platformBuckets;
        uint256 curCell = (b >> P_CELL_SHIFT) & MASK32;
        newest = b & MASK96;
        older = (b >> P_PREV_SHIFT) & MASK96;
        if (newest != 0) newestMaturesAt = _maturesAt(curCell);
        if (older != 0) olderMaturesAt = _maturesAt(curCell - (b >> P_GAP_SHIFT));
    }

    /// @inheritdoc ICoinVault
    function platformEarned() external view returns (uint256) {
        return _platformTotals & MASK128;
    }

    /// @inheritdoc ICoinVault
    function platformPaidOut() external view returns (uint256) {
        return _platformTotals >> 128;
    }

    /// @inheritdoc ICoinVault
    function platformMatured() external view returns (uint256) {
        return (_platformTotals & MASK128) - _platformUnmatured(_maturedBelow());
    }

    /// @inheritdoc ICoinVault
    function platformPending() external view returns (uint256) {
        return _platformUnmatured(_maturedBelow());
    }

    // =================================================================== pause

    /// @inheritdoc ICoinVault
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @inheritdoc ICoinVault
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @inheritdoc ICoinVault
    function pauseCoin() external onlyRole(PAUSER_ROLE) {
        _coin.pause();
        emit CoinPaused(msg.sender);
    }

    /// @inheritdoc ICoinVault
    function unpauseCoin() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _coin.unpause();
        emit CoinUnpaused(msg.sender);
    }

    // =================================================================== internals

    /// @dev Validate a chunk against the epoch and open it; returns the split rate to apply.
    function _openChunk(
        Epoch storage e,
        uint64 epochId,
        uint256 chunkIndex,
        bytes32 giftRoot,
        uint256 giftCount,
        uint256 grossTotal
    ) private returns (uint256 bps) {
        if (e.settledAt == 0) {
            if (chunkIndex != 0) revert CoinVaultChunkOutOfOrder(epochId, 0, chunkIndex);
            if (giftCount > type(uint64).max) revert CoinVaultAmountTooLarge(giftCount, type(uint64).max);
            if (grossTotal > type(uint128).max) revert CoinVaultAmountTooLarge(grossTotal, type(uint128).max);
            bps = creatorBps;
            e.giftRoot = giftRoot;
            e.grossTotal = uint128(grossTotal);
            e.giftCount = uint64(giftCount);
            e.settledAt = uint40(block.timestamp);
            e.bps = uint16(bps);
            return bps;
        }
        // Header first (AUDIT-6): a chunk for an epoch id opened with another header is a mismatch (a squatted
        // id), never "already settled", which the worker treats as done.
        if (e.giftRoot != giftRoot || e.giftCount != giftCount || e.grossTotal != grossTotal) {
            revert CoinVaultEpochHeaderMismatch(epochId);
        }
        uint256 done = e.chunksSettled;
        if (chunkIndex < done) revert CoinVaultChunkAlreadySettled(epochId, chunkIndex);
        if (chunkIndex > done) revert CoinVaultChunkOutOfOrder(epochId, done, chunkIndex);
        if (done == type(uint32).max) revert CoinVaultAmountTooLarge(done + 1, type(uint32).max);
        return e.bps;
    }

    /// @dev Credit each creator its share of `grossAmounts[i]`; returns the chunk's gross and creator totals.
    /// `room` is what the epoch's gross total leaves for this chunk; each gross is checked against it first,
    /// so gross < 2**128 below and neither `gross * bps` nor any sum can overflow.
    function _creditCreators(
        uint64 epochId,
        uint256 room,
        bytes32[] calldata creatorKeys,
        uint256[] calldata grossAmounts,
        uint256 bps,
        uint256 cell,
        uint256 mb
    ) private returns (uint256 chunkGross, uint256 creatorTotal) {
        uint256 n = creatorKeys.length;
        uint256 left = room;
        for (uint256 i; i < n; ) {
            uint256 gross = grossAmounts[i];
            if (gross > left) _revertGrossExceeded(epochId, room - left, gross);
            uint256 share;
            // unchecked: gross <= left <= room < 2**128 and bps <= 10000; share <= gross, so creatorTotal <=
            // chunkGross <= room; i < n, a calldata array length.
            unchecked {
                left -= gross;
                share = (gross * bps) / BPS_DENOMINATOR;
                creatorTotal += share;
            }
            if (share != 0) {
                bytes32 key = creatorKeys[i];
                _credits[key] = _addCredit(_credits[key], share, cell, mb);
            }
            unchecked {
                ++i;
            }
        }
        unchecked {
            chunkGross = room - left;
        }
    }

    /// @dev Revert path of `_creditCreators`: the epoch's settled gross would exceed its total.
    function _revertGrossExceeded(uint64 epochId, uint256 chunkSoFar, uint256 gross) private view {
        Epoch storage e = _epochs[epochId];
        uint256 before = uint256(e.settledGross) + chunkSoFar; // < 2**129
        uint256 wouldBe = gross > type(uint256).max - before ? type(uint256).max : before + gross;
        revert CoinVaultEpochGrossExceeded(epochId, e.grossTotal, wouldBe);
    }

    /// @dev Record a settled chunk on its epoch, credit the platform share, emit `GiftsSettled`.
    function _closeChunk(
        Epoch storage e,
        uint64 epochId,
        uint256 chunkIndex,
        uint256 creators,
        uint256 chunkGross,
        uint256 creatorTotal,
        uint256 cell,
        uint256 mb
    ) private {
        // fits: chunkGross <= grossTotal - settledGross (checked entry by entry in _creditCreators).
        e.settledGross = uint128(uint256(e.settledGross) + chunkGross);
        e.chunksSettled = uint32(chunkIndex + 1); // fits: _openChunk keeps chunkIndex < 2**32 - 1
        uint256 platformTotal;
        // unchecked: creatorTotal <= chunkGross (see _creditCreators).
        unchecked {
            platformTotal = chunkGross - creatorTotal;
        }
        if (platformTotal != 0) _addPlatformCredit(platformTotal, cell, mb);
        emit GiftsSettled(epochId, chunkIndex, e.giftRoot, e.bps, creators, chunkGross, creatorTotal, platformTotal);
    }

    /// @dev Cells below this one are matured now: (now + 1 - D) / G, or 0 while now + 1 <= D.
    function _maturedBelow() private view returns (uint256) {
        uint256 t = block.timestamp + 1;
        uint256 d = payoutDelay;
        return t > d ? (t - d) / maturityGranularity : 0;
    }

    /// @dev When a bucket of `cell` matures under the current delay: (cell + 1) * G - 1 + D (< 2**66).
    function _maturesAt(uint256 cell) private view returns (uint64) {
        return uint64((cell + 1) * maturityGranularity - 1 + payoutDelay);
    }

    /// @dev Move two buckets (cur @ curCell, prev @ curCell - gap) to a later `cell` before a credit there:
    /// rule 2 (cur matured: drop both), 3 (prev matured or empty: rotate) or 4 (merge: cur moves to `cell`).
    /// Returns the new cur (the credit is added by the caller), prev and gap (saturated at `maxGap`).
    function _roll(uint256 cur, uint256 prev, uint256 curCell, uint256 gap, uint256 cell, uint256 mb, uint256 maxGap)
        private
        pure
        returns (uint256, uint256, uint256)
    {
        // gap <= curCell < cell (invariant; time never goes back), so no subtraction here can borrow.
        if (curCell < mb) return (0, 0, 0);
        uint256 step = cell - curCell;
        if (prev == 0 || curCell - gap < mb) return (0, cur, step > maxGap ? maxGap : step);
        uint256 newGap = gap + step;
        return (cur, prev, newGap > maxGap ? maxGap : newGap);
    }

    /// @dev Unmatured part of two buckets: cur matures last, so cur matured means both are.
    function _unmaturedOf(uint256 cur, uint256 prev, uint256 curCell, uint256 gap, uint256 mb)
        private
        pure
        returns (uint256 u)
    {
        if (curCell < mb) return 0;
        u = cur;
        if (curCell - gap >= mb) u += prev;
    }

    function _unmatured(uint256 credit, uint256 mb) private pure returns (uint256) {
        return _unmaturedOf(
            (credit >> CUR_SHIFT) & MASK48,
            (credit >> PREV_SHIFT) & MASK48,
            (credit >> CELL_SHIFT) & MASK32,
            credit >> GAP_SHIFT,
            mb
        );
    }

    function _platformUnmatured(uint256 mb) private view returns (uint256) {
        uint256 b = _platformBuckets;
        return _unmaturedOf(b & MASK96, (b >> P_PREV_SHIFT) & MASK96, (b >> P_CELL_SHIFT) & MASK32, b >> P_GAP_SHIFT, mb);
    }

    /// @dev Add `amount` (> 0, < 2**128) credited in `cell` to a creator's packed slot; every field is range
    /// checked (`CoinVaultAmountTooLarge(value, max)`), so nothing wraps into a neighbour. Rules 1-4 of the
    /// maturity comment, written out (not via `_roll`) because this is the per-creator cost of `settleGifts`.
    function _addCredit(uint256 credit, uint256 amount, uint256 cell, uint256 mb) private pure returns (uint256) {
        // unchecked: amount < 2**128 and every field < 2**56, so no sum or shift below exceeds 256 bits; the
        // subtractions follow the invariants gap <= curCell < cell (time never goes back).
        unchecked {
            uint256 newEarned = (credit & MASK56) + amount;
            if (newEarned > MASK56) revert CoinVaultAmountTooLarge(newEarned, MASK56);
            uint256 curCell = (credit >> CELL_SHIFT) & MASK32;
            uint256 cur = (credit >> CUR_SHIFT) & MASK48;
            if (cell == curCell) {
                // rule 1: same cell
                cur += amount;
                if (cur > MASK48) revert CoinVaultAmountTooLarge(cur, MASK48);
                return credit + amount + (amount << CUR_SHIFT); // both fields range checked: no carry
            }
            uint256 prev;
            uint256 gap;
            if (curCell < mb) {
                // rule 2: cur (hence prev) matured: drop both
                cur = amount;
            } else {
                uint256 oldGap = credit >> GAP_SHIFT;
                prev = (credit >> PREV_SHIFT) & MASK48;
                if (prev == 0 || curCell - oldGap < mb) {
                    // rule 3: rotate
                    prev = cur;
                    cur = amount;
                    gap = cell - curCell;
                } else {
                    // rule 4: merge into cur, which moves to `cell`; prev keeps its cell
                    cur += amount;
                    gap = oldGap + cell - curCell;
                }
                if (gap > MAX_GAP) gap = MAX_GAP; // saturate: prev's assigned cell only moves later
            }
            if (cur > MASK48) revert CoinVaultAmountTooLarge(cur, MASK48);
            return newEarned | (credit & PAID_FIELD) | (cur << CUR_SHIFT) | (prev << PREV_SHIFT) | (cell << CELL_SHIFT)
                | (gap << GAP_SHIFT);
        }
    }

    /// @dev The platform's counterpart of `_addCredit` (two slots, wider fields).
    function _addPlatformCredit(uint256 amount, uint256 cell, uint256 mb) private {
        uint256 totals = _platformTotals;
        uint256 newEarned = (totals & MASK128) + amount;
        if (newEarned > MASK128) revert CoinVaultAmountTooLarge(newEarned, MASK128);
        _platformTotals = totals + amount; // no carry into `paid`: checked just above
        uint256 b = _platformBuckets;
        uint256 cur = b & MASK96;
        uint256 prev = (b >> P_PREV_SHIFT) & MASK96;
        uint256 curCell = (b >> P_CELL_SHIFT) & MASK32;
        uint256 gap = b >> P_GAP_SHIFT;
        if (cell != curCell) (cur, prev, gap) = _roll(cur, prev, curCell, gap, cell, mb, P_MAX_GAP);
        cur += amount;
        if (cur > MASK96) revert CoinVaultAmountTooLarge(cur, MASK96);
        _platformBuckets = cur | (prev << P_PREV_SHIFT) | (cell << P_CELL_SHIFT) | (gap << P_GAP_SHIFT);
    }

    /// @dev Record a payout of `amount` (> 0) against `key`'s matured, unpaid earnings (or revert with context).
    /// `_unmatured` written out: this is the per-wallet cost of `payout`.
    function _debitCredit(bytes32 key, uint256 amount, uint256 mb) private {
        uint256 credit = _credits[key];
        // unchecked: cur + prev <= earned < 2**56; gap <= curCell; the comparisons below never add `amount`.
        unchecked {
            uint256 maturedAmt = credit & MASK56;
            uint256 curCell = (credit >> CELL_SHIFT) & MASK32;
            if (curCell >= mb) {
                maturedAmt -= (credit >> CUR_SHIFT) & MASK48;
                if (curCell - (credit >> GAP_SHIFT) >= mb) maturedAmt -= (credit >> PREV_SHIFT) & MASK48;
            }
            uint256 paid = (credit >> PAID_SHIFT) & MASK56;
            // paid may exceed matured after the admin raised the delay.
            if (amount > maturedAmt || paid > maturedAmt - amount) {
                revert CoinVaultPayoutExceedsMatured(key, maturedAmt, paid, amount);
            }
            // paid + amount <= matured <= earned < 2**56: no carry into `cur`.
            _credits[key] = credit + (amount << PAID_SHIFT);
        }
    }

    /// @dev Take `amount` out of the unmatured buckets, newest first; at most min(unmatured, earned - paid).
    /// Returns the new (cur, prev); the caller lowers earned by `amount`.
    function _takeUnmatured(
        uint256 cur,
        uint256 prev,
        uint256 curCell,
        uint256 gap,
        uint256 earnedAmt,
        uint256 paid,
        uint256 amount,
        bytes32 key
    ) private view returns (uint256, uint256) {
        if (amount == 0) revert CoinVaultZeroAmount(0);
        uint256 voidable = Math.min(_unmaturedOf(cur, prev, curCell, gap, _maturedBelow()), earnedAmt - paid);
        if (amount > voidable) revert CoinVaultVoidExceedsPending(key, voidable, amount);
        // amount <= unmatured: if it exceeds cur, prev is unmatured too and holds the rest.
        if (amount <= cur) return (cur - amount, prev);
        return (0, prev - (amount - cur));
    }

    function _deposit(bytes32 accountKey, uint256 amount) private {
        if (amount == 0) revert CoinVaultZeroAmount(0);
        if (accountKey == bytes32(0)) revert CoinVaultZeroAccountKey();
        _coin.transferFrom(msg.sender, address(this), amount);
        emit Deposited(accountKey, msg.sender, amount);
    }

    function _transferUnskipped(
        address[] calldata to,
        uint256[] calldata amounts,
        uint256[] memory skipBits,
        uint256 count
    ) private {
        address[] memory payTo = new address[](count);
        uint256[] memory payAmounts = new uint256[](count);
        uint256 j;
        for (uint256 i; i < to.length; ++i) {
            if (skipBits[i >> 8] & (1 << (i & 0xff)) == 0) {
                payTo[j] = to[i];
                payAmounts[j] = amounts[i];
                ++j;
            }
        }
        _coin.vaultTransferBatch(payTo, payAmounts);
    }

    /// @dev Set bit `id` in `bitmap`; false if it was already set.
    function _setBit(mapping(uint256 => uint256) storage bitmap, uint256 id) private returns (bool) {
        uint256 word = id >> 8;
        uint256 mask = 1 << (id & 0xff);
        uint256 bits = bitmap[word];
        if (bits & mask != 0) return false;
        bitmap[word] = bits | mask;
        return true;
    }

    function _getBit(mapping(uint256 => uint256) storage bitmap, uint256 id) private view returns (bool) {
        return bitmap[id >> 8] & (1 << (id & 0xff)) != 0;
    }

    // ---- rolling allowance (packed window, layout documented at the constants)

    function _windowView(uint256 window) private view returns (uint256 limit, uint32 period, uint256 available) {
        return (window & MASK96, uint32(window >> 232), _availableNow(window));
    }

    /// @dev Allowance available now: refills linearly by limit/period per second up to `limit`.
    /// Overflow-free near type max: elapsed < period <= 2**24 and limit < 2**96, and mulDiv never overflows
    /// its intermediate product; available + refill < 2**97 (xERC20 issue #18).
    function _availableNow(uint256 window) private view returns (uint256) {
        uint256 limit = window & MASK96;
        uint256 available = (window >> 96) & MASK96;
        uint256 lastUpdated = (window >> 192) & MASK40;
        uint256 period = window >> 232;
        uint256 elapsed = block.timestamp - lastUpdated; // lastUpdated was a past block.timestamp
        if (elapsed >= period) return limit;
        return Math.min(limit, available + Math.mulDiv(elapsed, limit, period));
    }

    function _pack(uint256 limit, uint256 available, uint256 period) private view returns (uint256) {
        return limit | (available << 96) | (block.timestamp << 192) | (period << 232);
    }

    /// @dev Take `amount` from the window or revert with the matching allowance error.
    function _consume(uint256 window, uint256 amount, bool isMint) private view returns (uint256) {
        uint256 available = _availableNow(window);
        if (amount > available) {
            if (isMint) revert CoinVaultMintAllowanceExceeded(available, amount);
            revert CoinVaultPayoutAllowanceExceeded(available, amount);
        }
        // unchecked: amount <= available.
        unchecked {
            return _pack(window & MASK96, available - amount, window >> 232);
        }
    }

    /// @dev A window with a new limit/period. What is available now moves by the limit's change (xERC20):
    /// raising the limit adds the difference, lowering it removes it (floored at 0). A fresh window
    /// (`window == 0`) starts full.
    function _newWindow(uint256 window, uint256 limit, uint32 period) private view returns (uint256) {
        if (limit > MASK96) revert CoinVaultInvalidLimit(limit, MASK96);
        if (period == 0 || period > MAX_PERIOD) revert CoinVaultInvalidPeriod(period);
        if (window == 0) return _pack(limit, limit, period);
        uint256 oldLimit = window & MASK96;
        uint256 available = _availableNow(window);
        // available <= oldLimit, so available + (limit - oldLimit) <= limit < 2**96, and the lowered case
        // floors at zero: neither can overflow or underflow.
        if (limit >= oldLimit) {
            available += limit - oldLimit;
        } else {
            uint256 cut = oldLimit - limit;
            available = available > cut ? available - cut : 0;
        }
        return _pack(limit, available, period);
    }
}
