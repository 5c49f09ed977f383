//go:build itest

package regtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

const (
	// coinbaseMaturity is the number of confirmations regtest requires
	// before a coinbase output may be spent.
	coinbaseMaturity = 100

	// faucetFeeSats is the fee paid by every faucet transaction. The
	// transactions are about 150 vbytes, so this is far above btcd's
	// minimum relay fee without being large enough to matter.
	faucetFeeSats = 10_000

	satsPerBTC = 100_000_000
)

// Btcd is the regtest chain backend both lnd nodes use. Tests normally need
// only Network.Mine and Network.SendCoins; the connection details are
// exported so a test can also point other software (or btcctl) at it.
type Btcd struct {
	// RPCHost is btcd's JSON-RPC listen address (127.0.0.1:port).
	RPCHost string
	// RPCUser and RPCPass are the JSON-RPC basic-auth credentials.
	RPCUser string
	RPCPass string
	// RPCCertPath is btcd's self-signed TLS certificate; btcd serves
	// JSON-RPC only over TLS because lnd's btcd client requires it.
	RPCCertPath string
	// LogPath is where btcd's stdout and stderr go.
	LogPath string

	proc   *process
	client *http.Client

	// mu guards nextCoinbase, the height of the next coinbase the faucet
	// may spend.
	mu           sync.Mutex
	nextCoinbase int64
}

// rpcError is a btcd JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *rpcError) Error() string {
	return fmt.Sprintf("btcd rpc error %d: %s", e.Code, e.Message)
}

// call performs one btcd JSON-RPC call and decodes the result into out (if
// out is non-nil).
func (b *Btcd) call(ctx context.Context, method string, out any, params ...any) error {
	if params == nil {
		params = []any{}
	}
	reqBody, err := json.Marshal(map[string]any{
		"jsonrpc": "1.0",
		"id":      1,
		"method":  method,
		"params":  params,
	})
	if err != nil {
		return fmt.Errorf("btcd %s: encode request: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+b.RPCHost+"/", bytes.NewReader(reqBody))
	if err != nil {
		return fmt.Errorf("btcd %s: %w", method, err)
	}
	req.SetBasicAuth(b.RPCUser, b.RPCPass)
	req.Header.Set("Content-Type", "application/json")

	resp, err := b.client.Do(req)
	if err != nil {
		return fmt.Errorf("btcd %s: %w", method, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("btcd %s: read response: %w", method, err)
	}

	// btcd answers RPC-level errors with HTTP 500 and a JSON body, so try
	// to decode before looking at the status code.
	var envelope struct {
		Result json.RawMessage `json:"result"`
		Error  *rpcError       `json:"error"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		return fmt.Errorf("btcd %s: HTTP %d: %s", method, resp.StatusCode, bytes.TrimSpace(body))
	}
	if envelope.Error != nil {
		return fmt.Errorf("btcd %s: %w", method, envelope.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(envelope.Result, out); err != nil {
		return fmt.Errorf("btcd %s: decode result: %w", method, err)
	}
	return nil
}

// newBtcdClient returns an HTTPS client that trusts exactly btcd's
// self-signed certificate.
func newBtcdClient(certPath string) (*http.Client, error) {
	pem, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read btcd rpc cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("btcd rpc cert %s: no PEM certificate found", certPath)
	}
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		},
	}, nil
}

// BlockCount returns the height of btcd's best chain.
func (b *Btcd) BlockCount(ctx context.Context) (int64, error) {
	var height int64
	if err := b.call(ctx, "getblockcount", &height); err != nil {
		return 0, err
	}
	return height, nil
}

// Generate mines blocks paying to the harness's anyone-can-spend faucet
// address and returns their hashes. It does not wait for lnd to see the
// blocks; Network.Mine does.
func (b *Btcd) Generate(ctx context.Context, blocks int) ([]string, error) {
	if blocks <= 0 {
		return nil, nil
	}
	var hashes []string
	if err := b.call(ctx, "generate", &hashes, blocks); err != nil {
		return nil, fmt.Errorf("generate %d blocks: %w", blocks, err)
	}
	return hashes, nil
}

// SendCoins pays sats to addr from a mature coinbase output of the faucet
// and returns the transaction id. The change goes back to the faucet
// address but is not tracked, since every mined block adds a fresh
// coinbase. The transaction is unconfirmed until a block is mined.
func (b *Btcd) SendCoins(ctx context.Context, addr string, sats int64) (string, error) {
	if sats <= 0 {
		return "", fmt.Errorf("send coins: amount must be positive, got %d", sats)
	}

	b.mu.Lock()
	defer b.mu.Unlock()

	tip, err := b.BlockCount(ctx)
	if err != nil {
		return "", fmt.Errorf("send coins: %w", err)
	}
	for ; b.nextCoinbase <= tip-coinbaseMaturity; b.nextCoinbase++ {
		txid, value, ok, err := b.coinbaseOutput(ctx, b.nextCoinbase)
		if err != nil {
			return "", fmt.Errorf("send coins: %w", err)
		}
		if !ok || value < sats+faucetFeeSats {
			continue
		}
		b.nextCoinbase++
		return b.spendOpTrue(ctx, txid, value, addr, sats)
	}
	return "", fmt.Errorf("send coins: no mature coinbase of at least %d sats left at height %d; mine more blocks", sats+faucetFeeSats, tip)
}

// coinbaseOutput returns the txid and value of output 0 of the coinbase at
// height, and whether that output is still unspent.
func (b *Btcd) coinbaseOutput(ctx context.Context, height int64) (string, int64, bool, error) {
	var hash string
	if err := b.call(ctx, "getblockhash", &hash, height); err != nil {
		return "", 0, false, err
	}
	var block struct {
		Tx []string `json:"tx"`
	}
	if err := b.call(ctx, "getblock", &block, hash); err != nil {
		return "", 0, false, err
	}
	if len(block.Tx) == 0 {
		return "", 0, false, fmt.Errorf("block %d has no transactions", height)
	}
	txid := block.Tx[0]

	var out *struct {
		Value        float64 `json:"value"`
		ScriptPubKey struct {
			Address string `json:"address"`
		} `json:"scriptPubKey"`
	}
	if err := b.call(ctx, "gettxout", &out, txid, 0, true); err != nil {
		return "", 0, false, err
	}
	if out == nil {
		return txid, 0, false, nil // already spent
	}
	return txid, btcToSats(out.Value), true, nil
}

// spendOpTrue spends output 0 of txid (locked to the OP_TRUE P2WSH
// address) to addr, returning change to the faucet. The transaction is
// serialized here because btcd's createrawtransaction rejects segwit
// addresses.
func (b *Btcd) spendOpTrue(ctx context.Context, txid string, value int64, addr string, sats int64) (string, error) {
	script, err := decodeSegwitAddress("bcrt", addr)
	if err != nil {
		return "", fmt.Errorf("send coins: %w", err)
	}
	outs := []txOut{{value: sats, script: script}}
	if change := value - sats - faucetFeeSats; change > 0 {
		outs = append(outs, txOut{value: change, script: opTrueP2WSHScript})
	}
	raw, err := opTrueSpend(txid, 0, outs)
	if err != nil {
		return "", fmt.Errorf("send coins: %w", err)
	}
	var sent string
	if err := b.call(ctx, "sendrawtransaction", &sent, hex.EncodeToString(raw)); err != nil {
		return "", fmt.Errorf("send coins: %w", err)
	}
	return sent, nil
}

type txOut struct {
	value  int64
	script []byte
}

// opTrueSpend serializes (BIP 144) a version 2 transaction spending
// txid:vout, an OP_TRUE P2WSH output, to outs. Its only witness item is the
// OP_TRUE script itself, which is all such a spend needs.
func opTrueSpend(txid string, vout uint32, outs []txOut) ([]byte, error) {
	prev, err := hex.DecodeString(txid)
	if err != nil || len(prev) != 32 {
		return nil, fmt.Errorf("bad txid %q", txid)
	}
	// Txids are displayed byte-reversed.
	slices.Reverse(prev)
	if len(outs) == 0 || len(outs) > 0xfc {
		return nil, fmt.Errorf("need 1 to 252 outputs, got %d", len(outs))
	}

	var tx []byte
	tx = binary.LittleEndian.AppendUint32(tx, 2) // version
	tx = append(tx, 0x00, 0x01)                  // segwit marker, flag
	tx = append(tx, 1)                           // one input
	tx = append(tx, prev...)
	tx = binary.LittleEndian.AppendUint32(tx, vout)
	tx = append(tx, 0)                                    // empty scriptSig
	tx = binary.LittleEndian.AppendUint32(tx, 0xffffffff) // sequence
	tx = append(tx, byte(len(outs)))
	for _, o := range outs {
		if len(o.script) > 0xfc {
			return nil, fmt.Errorf("output script too long (%d bytes)", len(o.script))
		}
		tx = binary.LittleEndian.AppendUint64(tx, uint64(o.value))
		tx = append(tx, byte(len(o.script)))
		tx = append(tx, o.script...)
	}
	tx = append(tx, 1, byte(len(opTrueScript))) // one witness item
	tx = append(tx, opTrueScript...)
	tx = binary.LittleEndian.AppendUint32(tx, 0) // lock time
	return tx, nil
}

func btcToSats(btc float64) int64 {
	return int64(math.Round(btc * satsPerBTC))
}

// waitReady polls btcd until its RPC server answers, failing fast if the
// process exits.
func (b *Btcd) waitReady(ctx context.Context) error {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var lastErr error = errors.New("rpc certificate not written yet")
	for {
		if exited, err := b.proc.exited(); exited {
			return fmt.Errorf("btcd exited during startup: %w", err)
		}
		if b.client == nil {
			if _, err := os.Stat(b.RPCCertPath); err == nil {
				client, err := newBtcdClient(b.RPCCertPath)
				if err != nil {
					lastErr = err
				} else {
					b.client = client
				}
			}
		}
		if b.client != nil {
			callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := b.BlockCount(callCtx)
			cancel()
			if err == nil {
				return nil
			}
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for btcd rpc: %w (last error: %v)", ctx.Err(), lastErr)
		case <-ticker.C:
		}
	}
}
