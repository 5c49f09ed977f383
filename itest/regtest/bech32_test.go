//go:build itest

package regtest

import (
	"encoding/hex"
	"testing"
)

// TestSegwitV0Address checks the bech32 encoder against published vectors,
// because a wrong faucet address would only show up as an unfunded wallet
// minutes into a network start.
func TestSegwitV0Address(t *testing.T) {
	// BIP 173's first valid segwit address vector (lower-cased).
	prog, err := hex.DecodeString("751e76e8199196d454941c45d1b3a323f1433bd6")
	if err != nil {
		t.Fatal(err)
	}
	got, err := segwitV0Address("bc", prog)
	if err != nil {
		t.Fatal(err)
	}
	if want := "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"; got != want {
		t.Errorf("segwitV0Address(bc, ...) = %s, want %s", got, want)
	}

	// Bitcoin Core's test framework uses the same anyone-can-spend address.
	got, err = opTrueP2WSHAddress("bcrt")
	if err != nil {
		t.Fatal(err)
	}
	if want := "bcrt1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqseac85"; got != want {
		t.Errorf("opTrueP2WSHAddress(bcrt) = %s, want %s", got, want)
	}
}

// TestDecodeSegwitAddress checks the decoder the faucet uses to turn lnd's
// addresses into output scripts, against BIP 173 and BIP 350 vectors.
func TestDecodeSegwitAddress(t *testing.T) {
	cases := []struct {
		hrp, addr, script string
	}{
		{"bc", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"},
		{"bc", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"},
		{"bcrt", "bcrt1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqseac85", hex.EncodeToString(opTrueP2WSHScript)},
	}
	for _, c := range cases {
		got, err := decodeSegwitAddress(c.hrp, c.addr)
		if err != nil {
			t.Errorf("decodeSegwitAddress(%s): %v", c.addr, err)
			continue
		}
		if hex.EncodeToString(got) != c.script {
			t.Errorf("decodeSegwitAddress(%s) = %x, want %s", c.addr, got, c.script)
		}
	}

	bad := []string{
		"bcrt1qft5p2uhsdcdc3l2ua4ap5qqfg4pjaqlp250x7us7a8qqhrxrxfsqseac86", // checksum
		"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",                       // wrong hrp
		v1WithBech32Checksum(t),
	}
	for _, addr := range bad {
		if _, err := decodeSegwitAddress("bcrt", addr); err == nil {
			t.Errorf("decodeSegwitAddress(%s) accepted an invalid address", addr)
		}
	}
}

// v1WithBech32Checksum builds a witness v1 address carrying a BIP 173
// checksum, which BIP 350 requires decoders to reject.
func v1WithBech32Checksum(t *testing.T) string {
	t.Helper()
	prog := make([]byte, 32)
	data := append([]byte{1}, convertBits8to5(prog)...)
	addr := "bcrt1"
	for _, v := range append(data, bech32Checksum("bcrt", data)...) {
		addr += string(bech32Charset[v])
	}
	return addr
}
