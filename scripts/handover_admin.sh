#!/usr/bin/env bash
# Hand the vault's admin role to a multisig: show the roles, run `tokenbridge roles
# transfer-admin` (grant to the multisig, verify, revoke the current admin), show the roles
# again and run the smoke check. The current admin signs from an encrypted keystore.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/handover_admin.sh --to ADDRESS --keystore PATH [options]

Hand admin of the deployed CoinVault to ADDRESS (a multisig or timelock contract) and remove it
from the current admin, whose key signs. Refuses an ADDRESS without contract code unless
--allow-eoa. Asks for confirmation unless --yes. Runs scripts/smoke_check.py afterwards.

options:
  --to ADDRESS          new admin (required)
  --keystore PATH       current admin's encrypted keystore (required)
  --password-env VAR    variable holding the keystore password (default: a hidden prompt)
  --rpc-url URL         JSON-RPC URL (default: $TOKENBRIDGE_RPC_URL)
  --deployment PATH     deployment record (default: deployments/<chain id>.json)
  --allow-eoa           allow a new admin that is a plain key
  --yes                 do not ask for confirmation
  -h, --help            show this help

environment: TOKENBRIDGE_BIN (default: tokenbridge on PATH), PYTHON (default: python3)
EOF
}

to="" keystore="" password_env="" rpc_url="" deployment="" allow_eoa=0 yes=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --to) to="${2:?--to needs a value}"; shift 2 ;;
    --keystore) keystore="${2:?--keystore needs a value}"; shift 2 ;;
    --password-env) password_env="${2:?--password-env needs a value}"; shift 2 ;;
    --rpc-url) rpc_url="${2:?--rpc-url needs a value}"; shift 2 ;;
    --deployment) deployment="${2:?--deployment needs a value}"; shift 2 ;;
    --allow-eoa) allow_eoa=1; shift ;;
    --yes) yes=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$to" ]] || { echo "error: --to ADDRESS is required (see --help)" >&2; exit 2; }
[[ -n "$keystore" ]] || { echo "error: --keystore PATH is required (see --help)" >&2; exit 2; }

tb="${TOKENBRIDGE_BIN:-tokenbridge}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

common=()
[[ -n "$rpc_url" ]] && common+=(--rpc-url "$rpc_url")
[[ -n "$deployment" ]] && common+=(--deployment "$deployment")
signer=(--keystore "$keystore")
[[ -n "$password_env" ]] && signer+=(--password-env "$password_env")
transfer=(--to "$to")
[[ $allow_eoa -eq 1 ]] && transfer+=(--allow-eoa)

echo "== roles before"
"$tb" roles show "${common[@]}"

if [[ $yes -ne 1 ]]; then
  read -r -p "hand admin to $to and remove it from the keystore's address? [y/N] " answer
  [[ "$answer" == "y" || "$answer" == "yes" ]] || { echo "error: not confirmed; nothing sent" >&2; exit 1; }
fi

echo "== transfer-admin"
"$tb" roles transfer-admin "${transfer[@]}" --yes "${signer[@]}" "${common[@]}"

echo "== roles after"
"$tb" roles show "${common[@]}"

echo "== smoke check"
"$python" "$here/smoke_check.py" "${common[@]}"
