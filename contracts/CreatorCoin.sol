// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC20Pausable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Pausable.sol";

/// @title CreatorCoin
/// @notice The ERC-20 (6 decimals, ERC-2612 permit, pausable) that creators withdraw and holders deposit.
/// @dev Deployed by the CoinVault's constructor, so `vault` is immutable from the first block: there is no
/// set-once window in which another address could become the minter. Only the vault mints, burns, pauses
/// and unpauses; the vault decides who may ask it to (see contracts/README.md).
///
/// NOTE: the vault's custody accounting assumes every token it holds arrived through `mint` or a transfer;
/// tokens sent straight to the vault without `CoinVault.deposit` are held but credited to no account.
contract CreatorCoin is ERC20, ERC20Permit, ERC20Pausable {
    /// @notice The CoinVault that deployed this coin: the only minter, burner and pause switch.
    address public immutable vault;

    /// @dev Revert reason when an address other than the vault calls a vault-only function.
    error CreatorCoinUnauthorized(address caller);

    /// @dev Revert reason when `vaultTransferBatch` gets arrays of different lengths.
    error CreatorCoinLengthMismatch(uint256 recipients, uint256 amounts);

    modifier onlyVault() {
        if (msg.sender != vault) revert CreatorCoinUnauthorized(msg.sender);
        _;
    }

    /// @param name_ ERC-20 name (also the EIP-712 domain name used by permit).
    /// @param symbol_ ERC-20 symbol.
    constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) ERC20Permit(name_) {
        vault = msg.sender;
    }

    /// @notice 1 coin = 1,000,000 base units.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mint `amount` to `to`. Vault only.
    function mint(address to, uint256 amount) external onlyVault {
        _mint(to, amount);
    }

    /// @notice Burn `amount` from the vault's own balance. Vault only.
    function burn(uint256 amount) external onlyVault {
        _burn(msg.sender, amount);
    }

    /// @notice Transfer from the vault to many recipients in one call (one `Transfer` event each).
    /// @dev Saves the vault one external call per payout. The pause is checked once for the batch, then
    /// each leg calls ERC20's own `_update` (the pausable override would only re-read the same flag);
    /// the zero address is refused as `_transfer` would.
    function vaultTransferBatch(address[] calldata to, uint256[] calldata amounts) external onlyVault whenNotPaused {
        uint256 n = to.length;
        if (n != amounts.length) revert CreatorCoinLengthMismatch(n, amounts.length);
        for (uint256 i; i < n; ) {
            address recipient = to[i];
            if (recipient == address(0)) revert ERC20InvalidReceiver(address(0));
            ERC20._update(msg.sender, recipient, amounts[i]);
            // unchecked: i < n <= calldata length, far below 2**256.
            unchecked {
                ++i;
            }
        }
    }

    /// @notice Halt every transfer, mint and burn. Vault only (its pauser asks it to).
    function pause() external onlyVault {
        _pause();
    }

    /// @notice Resume transfers. Vault only (its admin asks it to).
    function unpause() external onlyVault {
        _unpause();
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Pausable) {
        super._update(from, to, value);
    }
}
