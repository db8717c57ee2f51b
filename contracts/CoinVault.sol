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

    // Packed credit slot, one per creator key (and one for the platform):
    //   bits   0.. 79  earned     total credited after voids           (uint80)
    //   bits  80..159  paid       total paid out                       (uint80)
    //   bits 160..223  pending    credited amount not yet matured      (uint64)
    //   bits 224..255  maturesAt  unix time when `pending` matures      (uint32, good until 2106)
    // matured = earned - (block.timestamp < maturesAt ? pending : 0); invariant paid <= matured <= earned.
    uint256 private constant MASK80 = (1 << 80) - 1;
    uint256 private constant MASK64 = (1 << 64) - 1;
    uint256 private constant PAID_SHIFT = 80;
    uint256 private constant PENDING_SHIFT = 160;
    uint256 private constant MATURES_SHIFT = 224;
    uint256 private constant PAID_BITS = MASK80 << PAID_SHIFT;

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
    uint256 private _platformCredit;

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
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(BRIDGE_ROLE, bridge);
        _grantRole(PAUSER_ROLE, pauser);
        splitDelay = params.splitDelay;
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
    /// @dev Lowering the delay does not shorten credits already pending; it applies to later settlements.
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
        if (amount == 0) revert CoinVaultZeroAmount();
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
    /// Each creator gets `gross * bps / 10000`; the chunk's remainder accrues to the platform. Every credit
    /// matures `payoutDelay` after this call; a new credit to a key whose previous credit is still pending
    /// joins it and moves the whole pending amount's maturity to the new time (conservative: the admin
    /// keeps the full window to void, and nothing matures earlier than its own delay).
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
        if (creatorKeys.length != grossAmounts.length) revert CoinVaultLengthMismatch();
        Epoch storage e = _epochs[epochId];
        uint256 bps = _openChunk(e, epochId, chunkIndex, giftRoot, giftCount, grossTotal);
        uint256 maturesAt = block.timestamp + payoutDelay;
        if (maturesAt > type(uint32).max) revert CoinVaultAmountTooLarge(maturesAt, type(uint32).max);
        (uint256 chunkGross, uint256 creatorTotal) = _creditCreators(creatorKeys, grossAmounts, bps, maturesAt);
        _closeChunk(e, epochId, chunkIndex, creatorKeys.length, chunkGross, creatorTotal, maturesAt);
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
    function voidCredit(bytes32 creatorKey, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _credits[creatorKey] = _voidCredit(_credits[creatorKey], creatorKey, amount);
        emit CreditVoided(creatorKey, amount);
    }

    /// @inheritdoc ICoinVault
    function voidPlatformCredit(uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _platformCredit = _voidCredit(_platformCredit, bytes32(0), amount);
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
        if (creatorKeys.length != n || to.length != n || amounts.length != n) revert CoinVaultLengthMismatch();
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
                _debitCredit(creatorKeys[i], amount);
                // unchecked: each amount <= matured < 2**80 and a batch has far fewer than 2**170 entries.
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
    function payoutPlatform(address to, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) whenNotPaused {
        if (amount == 0) revert CoinVaultZeroAmount();
        uint256 credit = _platformCredit;
        uint256 paid = (credit >> PAID_SHIFT) & MASK80;
        uint256 maturedAmt = _matured(credit);
        if (amount > maturedAmt - paid) revert CoinVaultPlatformPayoutExceedsMatured(maturedAmt, paid, amount);
        // unchecked: paid + amount <= matured < 2**80 (no carry into the pending field).
        unchecked {
            _platformCredit = credit + (amount << PAID_SHIFT);
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
        if (amount == 0) revert CoinVaultZeroAmount();
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
    /// @dev Not paused by `pause()`: reporting keeps going during an incident. Epoch ids strictly increase.
    function commitLiabilities(uint64 epochId, bytes32 root, uint256 total) external onlyRole(BRIDGE_ROLE) {
        uint64 latest = _latestLiabilityEpoch;
        if (_commitments[latest].committedAt != 0 && epochId <= latest) {
            revert CoinVaultLiabilityEpochNotIncreasing(epochId, latest);
        }
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
        return _credits[creatorKey] & MASK80;
    }

    /// @inheritdoc ICoinVault
    function paidOut(bytes32 creatorKey) external view returns (uint256) {
        return (_credits[creatorKey] >> PAID_SHIFT) & MASK80;
    }

    /// @inheritdoc ICoinVault
    function matured(bytes32 creatorKey) external view returns (uint256) {
        return _matured(_credits[creatorKey]);
    }

    /// @inheritdoc ICoinVault
    function withdrawable(bytes32 creatorKey) external view returns (uint256) {
        uint256 credit = _credits[creatorKey];
        return _matured(credit) - ((credit >> PAID_SHIFT) & MASK80);
    }

    /// @inheritdoc ICoinVault
    function pending(bytes32 creatorKey) external view returns (uint256) {
        return _pendingNow(_credits[creatorKey]);
    }

    /// @inheritdoc ICoinVault
    function creditOf(bytes32 creatorKey)
        external
        view
        returns (uint256 earnedAmount, uint256 paidAmount, uint256 pendingAmount, uint64 maturesAt)
    {
        uint256 credit = _credits[creatorKey];
        return (credit & MASK80, (credit >> PAID_SHIFT) & MASK80, _pendingNow(credit), uint64(credit >> MATURES_SHIFT));
    }

    /// @inheritdoc ICoinVault
    function platformEarned() external view returns (uint256) {
        return _platformCredit & MASK80;
    }

    /// @inheritdoc ICoinVault
    function platformPaidOut() external view returns (uint256) {
        return (_platformCredit >> PAID_SHIFT) & MASK80;
    }

    /// @inheritdoc ICoinVault
    function platformMatured() external view returns (uint256) {
        return _matured(_platformCredit);
    }

    /// @inheritdoc ICoinVault
    function platformPending() external view returns (uint256) {
        return _pendingNow(_platformCredit);
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
        uint256 done = e.chunksSettled;
        if (chunkIndex < done) revert CoinVaultChunkAlreadySettled(epochId, chunkIndex);
        if (chunkIndex > done) revert CoinVaultChunkOutOfOrder(epochId, done, chunkIndex);
        if (done == type(uint32).max) revert CoinVaultAmountTooLarge(done + 1, type(uint32).max);
        if (e.giftRoot != giftRoot || e.giftCount != giftCount || e.grossTotal != grossTotal) {
            revert CoinVaultEpochHeaderMismatch(epochId);
        }
        return e.bps;
    }

    /// @dev Credit each creator its share of `grossAmounts[i]`; returns the chunk's gross and creator totals.
    function _creditCreators(
        bytes32[] calldata creatorKeys,
        uint256[] calldata grossAmounts,
        uint256 bps,
        uint256 maturesAt
    ) private returns (uint256 chunkGross, uint256 creatorTotal) {
        uint256 n = creatorKeys.length;
        for (uint256 i; i < n; ) {
            uint256 gross = grossAmounts[i];
            uint256 share = (gross * bps) / BPS_DENOMINATOR; // checked multiply
            chunkGross += gross;
            // unchecked: share <= gross for bps <= 10000, so creatorTotal <= chunkGross, which is checked.
            unchecked {
                creatorTotal += share;
            }
            bytes32 key = creatorKeys[i];
            _credits[key] = _addCredit(_credits[key], share, maturesAt);
            // unchecked: i < n, a calldata array length.
            unchecked {
                ++i;
            }
        }
    }

    /// @dev Record a settled chunk on its epoch, credit the platform share, emit `GiftsSettled`.
    function _closeChunk(
        Epoch storage e,
        uint64 epochId,
        uint256 chunkIndex,
        uint256 creators,
        uint256 chunkGross,
        uint256 creatorTotal,
        uint256 maturesAt
    ) private {
        uint256 grossTotal = e.grossTotal;
        uint256 settled = uint256(e.settledGross) + chunkGross;
        if (settled > grossTotal) revert CoinVaultEpochGrossExceeded(epochId, grossTotal, settled);
        e.settledGross = uint128(settled); // fits: settled <= grossTotal, a uint128
        e.chunksSettled = uint32(chunkIndex + 1); // fits: _openChunk keeps chunkIndex < 2**32 - 1
        uint256 platformTotal;
        // unchecked: creatorTotal <= chunkGross (see _creditCreators).
        unchecked {
            platformTotal = chunkGross - creatorTotal;
        }
        _platformCredit = _addCredit(_platformCredit, platformTotal, maturesAt);
        emit GiftsSettled(epochId, chunkIndex, e.giftRoot, e.bps, creators, chunkGross, creatorTotal, platformTotal);
    }

    /// @dev Add `amount` to a packed credit: earned += amount; the still-pending part (if any) and `amount`
    /// become the new pending, maturing at `maturesAt`; paid is untouched.
    function _addCredit(uint256 credit, uint256 amount, uint256 maturesAt) private view returns (uint256) {
        uint256 newEarned = (credit & MASK80) + amount;
        if (newEarned > MASK80) revert CoinVaultAmountTooLarge(newEarned, MASK80);
        uint256 newPending = _pendingNow(credit) + amount;
        if (newPending > MASK64) revert CoinVaultAmountTooLarge(newPending, MASK64);
        return newEarned | (credit & PAID_BITS) | (newPending << PENDING_SHIFT) | (maturesAt << MATURES_SHIFT);
    }

    /// @dev Record a payout of `amount` against `key`'s matured, unpaid earnings (or revert with context).
    function _debitCredit(bytes32 key, uint256 amount) private {
        if (amount == 0) revert CoinVaultZeroAmount();
        uint256 credit = _credits[key];
        uint256 earnedAmt = credit & MASK80;
        uint256 paid = (credit >> PAID_SHIFT) & MASK80;
        uint256 maturedAmt = block.timestamp < (credit >> MATURES_SHIFT)
            ? earnedAmt - ((credit >> PENDING_SHIFT) & MASK64)
            : earnedAmt;
        if (amount > maturedAmt - paid) revert CoinVaultPayoutExceedsMatured(key, maturedAmt, paid, amount);
        // unchecked: paid + amount <= matured <= earned < 2**80, so adding at bit 80 cannot carry into the
        // pending field.
        unchecked {
            _credits[key] = credit + (amount << PAID_SHIFT);
        }
    }

    /// @dev Remove `amount` from the unmatured part of a packed credit (earned and pending both shrink).
    function _voidCredit(uint256 credit, bytes32 key, uint256 amount) private view returns (uint256) {
        if (amount == 0) revert CoinVaultZeroAmount();
        uint256 pendingAmt = _pendingNow(credit);
        if (amount > pendingAmt) revert CoinVaultVoidExceedsPending(key, pendingAmt, amount);
        // unchecked: amount <= pending <= earned, so neither field borrows from its neighbour; pending > 0
        // means block.timestamp < maturesAt, which stays as it is.
        unchecked {
            return credit - amount - (amount << PENDING_SHIFT);
        }
    }

    function _pendingNow(uint256 credit) private view returns (uint256) {
        return block.timestamp < (credit >> MATURES_SHIFT) ? (credit >> PENDING_SHIFT) & MASK64 : 0;
    }

    function _matured(uint256 credit) private view returns (uint256) {
        // pending <= earned is an invariant of _addCredit/_voidCredit.
        return (credit & MASK80) - _pendingNow(credit);
    }

    function _deposit(bytes32 accountKey, uint256 amount) private {
        if (amount == 0) revert CoinVaultZeroAmount();
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
