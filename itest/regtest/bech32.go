//go:build itest

package regtest

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// opTrueScript is the witness script OP_TRUE. Coins locked to its P2WSH
// address can be spent by anyone with a witness that is just the script,
// which lets the harness move mined coins to lnd wallets without a signing
// key (and so without secp256k1 code or btcd Go packages).
//
// opTrueP2WSHScript is the matching scriptPubKey: OP_0 <sha256(OP_TRUE)>.
var (
	opTrueScript      = []byte{0x51}
	opTrueP2WSHScript = func() []byte {
		h := sha256.Sum256(opTrueScript)
		return append([]byte{0x00, 0x20}, h[:]...)
	}()
)

// opTrueP2WSHAddress returns the bech32 P2WSH address of opTrueScript for
// the given human-readable part ("bcrt" on regtest).
func opTrueP2WSHAddress(hrp string) (string, error) {
	h := sha256.Sum256(opTrueScript)
	return segwitV0Address(hrp, h[:])
}

const (
	bech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

	// bech32Const and bech32mConst are the checksum constants of BIP 173
	// (witness version 0) and BIP 350 (witness version 1 and up).
	bech32Const  = 1
	bech32mConst = 0x2bc830a3
)

// decodeSegwitAddress decodes a bech32 (v0) or bech32m (v1+) segwit
// address for the given human-readable part and returns its
// scriptPubKey. The faucet needs it because btcd's createrawtransaction
// only accepts legacy address types.
func decodeSegwitAddress(hrp, addr string) ([]byte, error) {
	lower := strings.ToLower(addr)
	if lower != addr && strings.ToUpper(addr) != addr {
		return nil, fmt.Errorf("address %q: mixed case", addr)
	}
	sep := strings.LastIndexByte(lower, '1')
	if sep < 1 || lower[:sep] != hrp || len(lower)-sep-1 < 7 {
		return nil, fmt.Errorf("address %q: not a %s1... segwit address", addr, hrp)
	}
	var data []byte
	for _, c := range lower[sep+1:] {
		v := strings.IndexRune(bech32Charset, c)
		if v < 0 {
			return nil, fmt.Errorf("address %q: invalid character %q", addr, c)
		}
		data = append(data, byte(v))
	}
	version := data[0]
	want := uint32(bech32Const)
	if version > 0 {
		want = bech32mConst
	}
	if bech32Polymod(append(bech32HRPExpand(hrp), data...)) != want {
		return nil, fmt.Errorf("address %q: bad checksum", addr)
	}
	program, err := convertBits5to8(data[1 : len(data)-6])
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	if version > 16 || len(program) < 2 || len(program) > 40 || (version == 0 && len(program) != 20 && len(program) != 32) {
		return nil, fmt.Errorf("address %q: invalid witness version %d program length %d", addr, version, len(program))
	}
	op := byte(0x00) // OP_0
	if version > 0 {
		op = 0x50 + version // OP_1..OP_16
	}
	return append([]byte{op, byte(len(program))}, program...), nil
}

// convertBits5to8 is the inverse of convertBits8to5; leftover padding
// must be fewer than 5 zero bits.
func convertBits5to8(in []byte) ([]byte, error) {
	var (
		acc  uint32
		bits uint
		out  []byte
	)
	for _, v := range in {
		acc = acc<<5 | uint32(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
		}
	}
	if bits >= 5 || acc&(1<<bits-1) != 0 {
		return nil, fmt.Errorf("invalid padding")
	}
	return out, nil
}

// segwitV0Address encodes a witness version 0 program as a BIP 173 bech32
// address.
func segwitV0Address(hrp string, program []byte) (string, error) {
	if len(program) != 20 && len(program) != 32 {
		return "", fmt.Errorf("segwit v0 program must be 20 or 32 bytes, got %d", len(program))
	}
	data := append([]byte{0}, convertBits8to5(program)...)
	checksum := bech32Checksum(hrp, data)

	var b strings.Builder
	b.WriteString(hrp)
	b.WriteByte('1')
	for _, v := range append(data, checksum...) {
		b.WriteByte(bech32Charset[v])
	}
	return b.String(), nil
}

// convertBits8to5 regroups bytes into 5-bit values, padding the last group
// with zero bits, as bech32 requires.
func convertBits8to5(in []byte) []byte {
	var (
		acc  uint32
		bits uint
		out  []byte
	)
	for _, v := range in {
		acc = acc<<8 | uint32(v)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out = append(out, byte(acc>>bits)&31)
		}
	}
	if bits > 0 {
		out = append(out, byte(acc<<(5-bits))&31)
	}
	return out
}

func bech32Polymod(values []byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	chk := uint32(1)
	for _, v := range values {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i := 0; i < 5; i++ {
			if (top>>uint(i))&1 == 1 {
				chk ^= gen[i]
			}
		}
	}
	return chk
}

func bech32HRPExpand(hrp string) []byte {
	var values []byte
	for i := 0; i < len(hrp); i++ {
		values = append(values, hrp[i]>>5)
	}
	values = append(values, 0)
	for i := 0; i < len(hrp); i++ {
		values = append(values, hrp[i]&31)
	}
	return values
}

func bech32Checksum(hrp string, data []byte) []byte {
	values := append(bech32HRPExpand(hrp), data...)
	values = append(values, 0, 0, 0, 0, 0, 0)
	mod := bech32Polymod(values) ^ bech32Const
	out := make([]byte, 6)
	for i := range out {
		out[i] = byte(mod>>uint(5*(5-i))) & 31
	}
	return out
}
