#!/usr/bin/env bash
# build-tools.sh builds the regtest binaries (btcd, btcctl, lnd, lncli) that
# the itest/regtest harness drives, from the versions pinned in
# itest/tools/go.mod.
#
# The binaries go to ${TIMMY_TOOLS_DIR:-$HOME/.cache/timmy/bin}. A stamp file
# next to them records a hash of everything that determines the build (the
# tools module's go.mod and go.sum, the build tags, the Go version and the
# target platform), so a second run with nothing changed returns in well
# under a second. A cold build of lnd takes several minutes on 2 cores.
#
# Usage: bash itest/build-tools.sh [--force]
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_mod="${script_dir}/tools"
out_dir="${TIMMY_TOOLS_DIR:-${HOME}/.cache/timmy/bin}"
stamp_file="${out_dir}/.timmy-tools.stamp"

# invoicesrpc serves /v2/invoices/{hodl,settle,cancel,subscribe,lookup},
# routerrpc serves /v2/router/send; the others match what lnd's release
# builds ship so lncli works fully against these nodes.
lnd_tags="signrpc walletrpc chainrpc invoicesrpc routerrpc peersrpc"
binaries=(btcd btcctl lnd lncli)

force=0
if [[ "${1:-}" == "--force" ]]; then
	force=1
fi

start_s=$(date +%s)

# The tools module is its own module; never let a go.work in a parent
# directory pull it into the service's build, and never let the build
# rewrite go.mod/go.sum behind our back (-mod=readonly fails loudly if
# go.sum is incomplete instead).
export GOWORK=off
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED="${CGO_ENABLED:-0}"

cd "${tools_mod}"

lnd_version="$(go list -m -f '{{.Version}}' github.com/lightningnetwork/lnd)"
btcd_version="$(go list -m -f '{{.Version}}' github.com/btcsuite/btcd)"
go_version="$(go env GOVERSION)"
target="$(go env GOOS)/$(go env GOARCH)"
mod_hash="$(cat go.mod go.sum | sha256sum | cut -d' ' -f1)"

stamp="lnd=${lnd_version} btcd=${btcd_version} go=${go_version} target=${target} tags=${lnd_tags// /,} cgo=${CGO_ENABLED} mod=${mod_hash}"

cached=1
if [[ "${force}" -eq 1 ]] || [[ ! -f "${stamp_file}" ]] || [[ "$(cat "${stamp_file}")" != "${stamp}" ]]; then
	cached=0
fi
for b in "${binaries[@]}"; do
	if [[ ! -x "${out_dir}/${b}" ]]; then
		cached=0
	fi
done

if [[ "${cached}" -eq 1 ]]; then
	echo "build-tools: cached binaries in ${out_dir} are up to date (lnd ${lnd_version}, btcd ${btcd_version}); took $(($(date +%s) - start_s))s"
	exit 0
fi

echo "build-tools: building lnd ${lnd_version}, btcd ${btcd_version} with ${go_version} into ${out_dir}"
mkdir -p "${out_dir}"

# Build into a staging directory beside the destination and move the
# binaries in afterwards, so an interrupted build never leaves a mix of old
# and new binaries that the stamp claims are current.
staging="$(mktemp -d "${out_dir}/.staging.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT

lnd_pkg="github.com/lightningnetwork/lnd"
ldflags="-s -w -X ${lnd_pkg}/build.Commit=${lnd_version} -X ${lnd_pkg}/build.RawTags=${lnd_tags// /,}"

# One go build invocation for all four commands lets the compiler use every
# core across packages; the lnd tags and ldflags do not affect btcd.
go build -trimpath -tags="${lnd_tags}" -ldflags="${ldflags}" -o "${staging}/" \
	github.com/btcsuite/btcd \
	github.com/btcsuite/btcd/cmd/btcctl \
	"${lnd_pkg}/cmd/lnd" \
	"${lnd_pkg}/cmd/lncli"

# Invalidate the stamp before replacing binaries, then write it last.
rm -f "${stamp_file}"
for b in "${binaries[@]}"; do
	mv -f "${staging}/${b}" "${out_dir}/${b}"
done
echo "${stamp}" >"${stamp_file}"

"${out_dir}/lnd" --version
echo "build-tools: built ${binaries[*]} in $(($(date +%s) - start_s))s"
