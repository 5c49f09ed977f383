//go:build itest

package regtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// defaultRequestTimeout bounds every unary REST call whose context has no
// earlier deadline, so a wedged lnd fails a test instead of hanging it.
const defaultRequestTimeout = 30 * time.Second

// Node is one running lnd. The exported fields are what a production LND
// adapter needs to connect (REST URL, macaroon, TLS certificate); the
// methods are test conveniences built on lnd's REST API using only the
// standard library.
type Node struct {
	// Name is "service" or "buyer"; it prefixes log files and errors.
	Name string
	// RESTURL is the base URL of lnd's REST proxy, https://127.0.0.1:port.
	RESTURL string
	// GRPCAddr is lnd's gRPC listen address, 127.0.0.1:port.
	GRPCAddr string
	// P2PAddr is lnd's Lightning peer listen address, 127.0.0.1:port.
	P2PAddr string
	// PubKey is the node's identity public key, hex encoded.
	PubKey string
	// MacaroonPath is the admin.macaroon file, which grants full access.
	MacaroonPath string
	// TLSCertPath is lnd's self-signed tls.cert; clients must pin it.
	TLSCertPath string
	// Dir is the node's --lnddir.
	Dir string
	// LogPath is where lnd's stdout and stderr go.
	LogPath string

	proc        *process
	client      *http.Client
	macaroonHex string
}

// HTTPClient returns an http.Client that trusts exactly this node's TLS
// certificate. It has no overall timeout so it can be used for streaming
// endpoints; bound each request with its context instead.
func (n *Node) HTTPClient() *http.Client { return n.client }

// MacaroonHex returns the admin macaroon hex encoded, as lnd's REST API
// expects it in the Grpc-Metadata-macaroon header.
func (n *Node) MacaroonHex() string { return n.macaroonHex }

// APIError is a non-2xx answer from lnd's REST proxy, or an error object
// inside a stream. Code is the gRPC status code.
type APIError struct {
	HTTPStatus int
	Code       int    `json:"code"`
	Message    string `json:"message"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("lnd HTTP %d (grpc code %d): %s", e.HTTPStatus, e.Code, e.Message)
}

// newRequest builds an authenticated REST request. in is JSON encoded as
// the body unless it is nil.
func (n *Node) newRequest(ctx context.Context, method, path string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		buf, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		body = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.RESTURL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Grpc-Metadata-macaroon", n.macaroonHex)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// Do performs a unary REST call: method and path (e.g. "GET",
// "/v1/getinfo"), an optional JSON body in, and decodes the JSON answer
// into out if out is non-nil. Calls are bounded by defaultRequestTimeout.
func (n *Node) Do(ctx context.Context, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, defaultRequestTimeout)
	defer cancel()

	req, err := n.newRequest(ctx, method, path, in)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", n.Name, method, path, err)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", n.Name, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s %s: read body: %w", n.Name, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s %s: %w", n.Name, method, path, parseAPIError(resp.StatusCode, data))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s %s: decode %q: %w", n.Name, method, path, truncate(data, 200), err)
	}
	return nil
}

// Stream is an open server-streaming REST call. lnd's REST proxy writes one
// JSON object per message, {"result": {...}} or {"error": {...}}.
//
// The proxy sends the HTTP response headers only together with the first
// message, so a plain http.Client.Do on a quiet stream such as
// /v1/invoices/subscribe blocks until the first event. Stream therefore
// performs the request in the background and Next waits for it.
type Stream struct {
	name   string
	path   string
	cancel context.CancelFunc

	opened  chan struct{} // closed once resp or openErr is set
	resp    *http.Response
	openErr error
	dec     *json.Decoder
}

// OpenStream starts a server-streaming REST call such as "/v2/router/send"
// or "/v2/invoices/subscribe/{hash}" and returns without waiting for the
// server. The call stays open until ctx is done, the server ends it, or
// Close is called; ctx should carry a deadline. Errors from opening the
// call surface from the first Next.
func (n *Node) OpenStream(ctx context.Context, method, path string, in any) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := n.newRequest(ctx, method, path, in)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s %s %s: %w", n.Name, method, path, err)
	}
	s := &Stream{name: n.Name, path: path, cancel: cancel, opened: make(chan struct{})}
	go func() {
		defer close(s.opened)
		resp, err := n.client.Do(req)
		if err != nil {
			s.openErr = fmt.Errorf("%s %s %s: %w", n.Name, method, path, err)
			return
		}
		if resp.StatusCode/100 != 2 {
			defer resp.Body.Close()
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			s.openErr = fmt.Errorf("%s %s %s: %w", n.Name, method, path, parseAPIError(resp.StatusCode, data))
			return
		}
		s.resp = resp
		s.dec = json.NewDecoder(resp.Body)
	}()
	return s, nil
}

// NextRaw returns the next message's "result" object undecoded. It returns
// io.EOF when the server closed the stream and an *APIError when the server
// sent an error message.
func (s *Stream) NextRaw() (json.RawMessage, error) {
	<-s.opened
	if s.openErr != nil {
		return nil, s.openErr
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  *APIError       `json:"error"`
	}
	if err := s.dec.Decode(&msg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%s stream %s: %w", s.name, s.path, err)
	}
	if msg.Error != nil {
		msg.Error.HTTPStatus = s.resp.StatusCode
		return nil, fmt.Errorf("%s stream %s: %w", s.name, s.path, msg.Error)
	}
	return msg.Result, nil
}

// Next decodes the next message's "result" object into out.
func (s *Stream) Next(out any) error {
	raw, err := s.NextRaw()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s stream %s: decode %q: %w", s.name, s.path, truncate(raw, 200), err)
	}
	return nil
}

// Close ends the stream. For /v2/router/send this only stops the updates;
// the payment itself carries on inside lnd.
func (s *Stream) Close() {
	s.cancel()
	<-s.opened
	if s.resp != nil {
		_ = s.resp.Body.Close()
	}
}

// parseAPIError decodes an lnd REST error body, which is either a bare
// status object {"code":..,"message":..} (unary calls) or one wrapped as
// {"error":{...}} (streams that fail before their first message).
func parseAPIError(status int, body []byte) *APIError {
	var wrapped struct {
		Error *APIError `json:"error"`
	}
	if json.Unmarshal(body, &wrapped) == nil && wrapped.Error != nil && wrapped.Error.Message != "" {
		wrapped.Error.HTTPStatus = status
		return wrapped.Error
	}
	apiErr := &APIError{}
	if json.Unmarshal(body, apiErr) != nil || apiErr.Message == "" {
		apiErr.Message = string(bytes.TrimSpace(body))
	}
	apiErr.HTTPStatus = status
	return apiErr
}

// Info is the subset of /v1/getinfo the harness and tests use.
type Info struct {
	IdentityPubkey    string `json:"identity_pubkey"`
	Alias             string `json:"alias"`
	BlockHeight       int64  `json:"block_height"`
	SyncedToChain     bool   `json:"synced_to_chain"`
	SyncedToGraph     bool   `json:"synced_to_graph"`
	NumActiveChannels int64  `json:"num_active_channels"`
	NumPeers          int64  `json:"num_peers"`
	Version           string `json:"version"`
}

// GetInfo calls /v1/getinfo.
func (n *Node) GetInfo(ctx context.Context) (Info, error) {
	var info Info
	if err := n.Do(ctx, http.MethodGet, "/v1/getinfo", nil, &info); err != nil {
		return Info{}, fmt.Errorf("get info: %w", err)
	}
	return info, nil
}

// NewAddress returns a fresh P2WKH address of the node's on-chain wallet.
func (n *Node) NewAddress(ctx context.Context) (string, error) {
	var resp struct {
		Address string `json:"address"`
	}
	if err := n.Do(ctx, http.MethodGet, "/v1/newaddress?type=WITNESS_PUBKEY_HASH", nil, &resp); err != nil {
		return "", fmt.Errorf("new address: %w", err)
	}
	return resp.Address, nil
}

// WalletBalanceSats returns the on-chain wallet's confirmed and unconfirmed
// balance.
func (n *Node) WalletBalanceSats(ctx context.Context) (confirmed, unconfirmed int64, err error) {
	var resp struct {
		Confirmed   int64 `json:"confirmed_balance,string"`
		Unconfirmed int64 `json:"unconfirmed_balance,string"`
	}
	if err := n.Do(ctx, http.MethodGet, "/v1/balance/blockchain", nil, &resp); err != nil {
		return 0, 0, fmt.Errorf("wallet balance: %w", err)
	}
	return resp.Confirmed, resp.Unconfirmed, nil
}

// ChannelBalanceSats returns the node's local and remote balance summed
// over its open channels, from /v1/balance/channels. Amounts locked in
// in-flight HTLCs are in neither, and while an HTLC is on the commitment
// the channel opener's side is also reduced by the HTLC's share of the
// commitment fee; call WaitChannelsIdle first when comparing exactly.
func (n *Node) ChannelBalanceSats(ctx context.Context) (local, remote int64, err error) {
	type amount struct {
		Sat int64 `json:"sat,string"`
	}
	var resp struct {
		Local  amount `json:"local_balance"`
		Remote amount `json:"remote_balance"`
	}
	if err := n.Do(ctx, http.MethodGet, "/v1/balance/channels", nil, &resp); err != nil {
		return 0, 0, fmt.Errorf("channel balance: %w", err)
	}
	return resp.Local.Sat, resp.Remote.Sat, nil
}

// Channel is the subset of a /v1/channels entry the harness uses.
type Channel struct {
	Active        bool   `json:"active"`
	RemotePubkey  string `json:"remote_pubkey"`
	ChannelPoint  string `json:"channel_point"`
	ChanID        string `json:"chan_id"`
	Capacity      int64  `json:"capacity,string"`
	LocalBalance  int64  `json:"local_balance,string"`
	RemoteBalance int64  `json:"remote_balance,string"`
	// PendingHTLCs are the HTLCs on the node's current commitment.
	PendingHTLCs []json.RawMessage `json:"pending_htlcs"`
}

// ListChannels returns the node's open channels (pending ones are not
// included).
func (n *Node) ListChannels(ctx context.Context) ([]Channel, error) {
	var resp struct {
		Channels []Channel `json:"channels"`
	}
	if err := n.Do(ctx, http.MethodGet, "/v1/channels", nil, &resp); err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	return resp.Channels, nil
}

// WaitChannelsIdle waits until no channel of the node has an HTLC on its
// commitment. A payment is reported SUCCEEDED or FAILED as soon as the
// preimage or failure arrives, but the HTLC leaves the commitment (and
// its commitment fee returns to the balance) only after the following
// commitment update, so exact balance checks must wait for this first.
func (n *Node) WaitChannelsIdle(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		chans, err := n.ListChannels(ctx)
		if err != nil {
			return false, err
		}
		for _, c := range chans {
			if len(c.PendingHTLCs) > 0 {
				return false, fmt.Errorf("channel %s has %d pending HTLCs", c.ChannelPoint, len(c.PendingHTLCs))
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s channels to be idle: %w", n.Name, err)
	}
	return nil
}

// ConnectPeer connects to another node's P2P address. Connecting to an
// already connected peer is not an error.
func (n *Node) ConnectPeer(ctx context.Context, peer *Node) error {
	req := map[string]any{
		"addr": map[string]string{"pubkey": peer.PubKey, "host": peer.P2PAddr},
		"perm": false,
	}
	err := n.Do(ctx, http.MethodPost, "/v1/peers", req, nil)
	var apiErr *APIError
	if errors.As(err, &apiErr) && strings.Contains(apiErr.Message, "already connected") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("connect %s to %s: %w", n.Name, peer.Name, err)
	}
	return nil
}

// OpenChannel opens a channel of capacitySats to peer, funded from this
// node's wallet, and returns the funding outpoint as "txid:index". The
// channel is pending until six blocks are mined.
func (n *Node) OpenChannel(ctx context.Context, peer *Node, capacitySats int64) (string, error) {
	pub, err := hex.DecodeString(peer.PubKey)
	if err != nil {
		return "", fmt.Errorf("open channel: peer pubkey: %w", err)
	}
	req := map[string]any{
		"node_pubkey":          base64.StdEncoding.EncodeToString(pub),
		"local_funding_amount": strconv.FormatInt(capacitySats, 10),
		"push_sat":             "0",
		// Regtest lnd uses a static fee estimate; naming a rate
		// avoids an error-level log line about a missing one.
		"sat_per_vbyte": "10",
	}
	var resp struct {
		FundingTxidBytes string `json:"funding_txid_bytes"`
		OutputIndex      int64  `json:"output_index"`
	}
	if err := n.Do(ctx, http.MethodPost, "/v1/channels", req, &resp); err != nil {
		return "", fmt.Errorf("open channel %s->%s: %w", n.Name, peer.Name, err)
	}
	txid, err := base64.StdEncoding.DecodeString(resp.FundingTxidBytes)
	if err != nil {
		return "", fmt.Errorf("open channel: decode funding txid: %w", err)
	}
	// funding_txid_bytes is in internal byte order; txids are displayed
	// reversed.
	for i, j := 0, len(txid)-1; i < j; i, j = i+1, j-1 {
		txid[i], txid[j] = txid[j], txid[i]
	}
	return fmt.Sprintf("%x:%d", txid, resp.OutputIndex), nil
}

// loadTLS prepares the HTTP client pinned to the node's TLS certificate
// once lnd has written it (within milliseconds of starting).
func (n *Node) loadTLS() error {
	certPEM, err := os.ReadFile(n.TLSCertPath)
	if err != nil {
		return fmt.Errorf("read tls cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		return fmt.Errorf("tls cert %s: no PEM certificate found", n.TLSCertPath)
	}
	n.client = &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			// Streams (payments, invoice subscriptions) hold connections
			// open; allow enough idle ones that unary calls are not
			// forced to redial each time.
			MaxIdleConnsPerHost: 16,
		},
	}
	return nil
}

// loadMacaroon reads admin.macaroon, which lnd writes only after it has
// created and unlocked the wallet.
func (n *Node) loadMacaroon() error {
	mac, err := os.ReadFile(n.MacaroonPath)
	if err != nil {
		return fmt.Errorf("read macaroon: %w", err)
	}
	if len(mac) == 0 {
		return fmt.Errorf("macaroon %s is empty", n.MacaroonPath)
	}
	n.macaroonHex = hex.EncodeToString(mac)
	return nil
}

// State returns lnd's wallet/server state from GET /v1/state, which needs
// no macaroon: NON_EXISTING, LOCKED, UNLOCKED, RPC_ACTIVE, SERVER_ACTIVE
// or WAITING_TO_START. Other calls fail until it is SERVER_ACTIVE.
func (n *Node) State(ctx context.Context) (string, error) {
	var resp struct {
		State string `json:"state"`
	}
	if err := n.Do(ctx, http.MethodGet, "/v1/state", nil, &resp); err != nil {
		return "", fmt.Errorf("get state: %w", err)
	}
	return resp.State, nil
}

// waitReady waits until lnd's server is active and /v1/getinfo reports
// synced_to_chain, failing fast if lnd exits. It watches /v1/state first
// because polling getinfo during startup fills lnd's log with errors.
func (n *Node) waitReady(ctx context.Context) (Info, error) {
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	var lastErr error = errors.New("tls certificate not written yet")
	for {
		if exited, err := n.proc.exited(); exited {
			return Info{}, fmt.Errorf("lnd %s exited during startup: %w", n.Name, err)
		}
		if info, err := n.readyStep(ctx); err != nil {
			lastErr = err
		} else {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return Info{}, fmt.Errorf("wait for lnd %s: %w (last: %v)", n.Name, ctx.Err(), lastErr)
		case <-ticker.C:
		}
	}
}

// readyStep makes one attempt of waitReady's checks, returning an error
// that says what is still missing.
func (n *Node) readyStep(ctx context.Context) (Info, error) {
	if n.client == nil {
		if err := n.loadTLS(); err != nil {
			return Info{}, err
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if n.macaroonHex == "" {
		state, err := n.State(callCtx)
		if err != nil {
			return Info{}, err
		}
		if state != "SERVER_ACTIVE" {
			return Info{}, fmt.Errorf("state %s", state)
		}
		if err := n.loadMacaroon(); err != nil {
			return Info{}, err
		}
	}
	info, err := n.GetInfo(callCtx)
	if err != nil {
		return Info{}, err
	}
	if !info.SyncedToChain {
		return Info{}, fmt.Errorf("not synced to chain at height %d", info.BlockHeight)
	}
	return info, nil
}

// CanPay reports whether lnd finds a route from this node to dest for sats
// (GET /v1/graph/routes/{pub_key}/{amt}). A fresh channel is listed as
// active a moment before the router can use it: the router only sees it
// once it is in the node's graph, after six confirmations.
func (n *Node) CanPay(ctx context.Context, dest *Node, sats int64) error {
	var resp struct {
		Routes []json.RawMessage `json:"routes"`
	}
	path := fmt.Sprintf("/v1/graph/routes/%s/%d", dest.PubKey, sats)
	if err := n.Do(ctx, http.MethodGet, path, nil, &resp); err != nil {
		return fmt.Errorf("query route %s->%s: %w", n.Name, dest.Name, err)
	}
	if len(resp.Routes) == 0 {
		return fmt.Errorf("query route %s->%s: no route", n.Name, dest.Name)
	}
	return nil
}

// waitHeight polls until the node is synced to chain at height or above.
func (n *Node) waitHeight(ctx context.Context, height int64) error {
	return poll(ctx, 100*time.Millisecond, func() (bool, error) {
		info, err := n.GetInfo(ctx)
		if err != nil {
			return false, err
		}
		if info.BlockHeight < height || !info.SyncedToChain {
			return false, fmt.Errorf("%s at height %d (synced=%t), want %d", n.Name, info.BlockHeight, info.SyncedToChain, height)
		}
		return true, nil
	})
}

// poll calls check every interval until it reports done, it returns a
// permanent error via stopPolling, or ctx ends. The last non-nil error
// from check is included in the timeout error, so failures say what was
// being waited for.
func poll(ctx context.Context, interval time.Duration, check func() (bool, error)) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var lastErr error
	for {
		done, err := check()
		if done {
			return nil
		}
		var stop *stopPolling
		if errors.As(err, &stop) {
			return stop.err
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// stopPolling wraps an error that makes poll give up at once.
type stopPolling struct{ err error }

func (s *stopPolling) Error() string { return s.err.Error() }

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
