//go:build itest

package regtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// initialBlocks is mined before lnd starts. Segwit activates on
	// regtest around height 432 and lnd refuses to open channels
	// before it, and blocks up to initialBlocks-100 carry spendable
	// coinbases for the faucet.
	initialBlocks = 500

	// DefaultChannelSats is the capacity of the buyer->service channel:
	// all of it starts on the buyer's side, so the buyer can pay up to
	// roughly this much (less the channel reserve and commitment fees).
	DefaultChannelSats = 5_000_000

	// DefaultBuyerFundingSats is sent to the buyer's on-chain wallet
	// before the channel is opened.
	DefaultBuyerFundingSats = 100_000_000

	// startTimeout bounds all of Start. A warm start takes well under a
	// minute on two cores.
	startTimeout = 4 * time.Minute

	// logTailLines is how much of each daemon's log a failed test prints.
	logTailLines = 60

	rpcUser = "timmy"
)

// Options tunes Start. The zero value gives the defaults.
type Options struct {
	// ChannelSats is the capacity of the buyer->service channel
	// (default DefaultChannelSats; at most 16,777,215 without wumbo).
	ChannelSats int64
	// BuyerFundingSats is the buyer's on-chain funding (default
	// DefaultBuyerFundingSats); it must exceed ChannelSats plus fees.
	BuyerFundingSats int64
	// ServiceFundingSats, if positive, is sent to the service's on-chain
	// wallet too (the default network gives the service no on-chain
	// coins; it does not need any to receive).
	ServiceFundingSats int64
	// ExtraServiceArgs and ExtraBuyerArgs are appended to the lnd
	// command lines, e.g. "--protocol.wumbo-channels".
	ExtraServiceArgs []string
	ExtraBuyerArgs   []string
}

// Network is a running regtest network: one btcd and two lnd nodes with a
// channel from Buyer to Service. All processes are stopped and the
// directory removed when the test that started it ends.
type Network struct {
	// Service is the lnd the Timmy service under test connects to. It
	// starts with zero local balance and ChannelSats of inbound
	// liquidity.
	Service *Node
	// Buyer is the lnd that pays invoices. It holds the channel's whole
	// capacity (less fees) on its side.
	Buyer *Node
	// Btcd is the chain backend; use Mine and SendCoins rather than
	// calling it directly.
	Btcd *Btcd
	// Dir holds every daemon's data and logs. It is kept after a failed
	// test, or always if TIMMY_ITEST_KEEP is set.
	Dir string
	// ChannelPoint is the buyer->service channel's funding outpoint
	// ("txid:index").
	ChannelPoint string
	// StartDuration is how long Start took.
	StartDuration time.Duration

	t     testing.TB
	procs []*process
}

// binaries are the executables build-tools.sh produces.
var binaries = []string{"btcd", "btcctl", "lnd", "lncli"}

// ToolsDir returns where the regtest binaries are looked up:
// $TIMMY_TOOLS_DIR, or $HOME/.cache/timmy/bin, matching build-tools.sh.
func ToolsDir() string {
	if dir := os.Getenv("TIMMY_TOOLS_DIR"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "timmy", "bin")
	}
	return filepath.Join(home, ".cache", "timmy", "bin")
}

// inCI reports whether the CI environment variable is set to something
// other than false, in which case missing binaries fail rather than skip:
// CI must never go green by silently skipping the integration tests.
func inCI() bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv("CI")))
	return v != "" && v != "0" && v != "false"
}

// Start builds a fresh regtest network for the test and returns when the
// buyer->service channel is active on both sides and the buyer's router
// finds a route over it, so payments work at once. It skips the test (or
// fails it when CI is set) if the binaries from itest/build-tools.sh are
// missing, and fails the test on any other startup error, printing the tail
// of every daemon log.
func Start(t testing.TB) *Network {
	t.Helper()
	return StartWithOptions(t, Options{})
}

// StartWithOptions is Start with non-default channel size, funding or extra
// lnd flags.
func StartWithOptions(t testing.TB, opts Options) *Network {
	t.Helper()
	if opts.ChannelSats == 0 {
		opts.ChannelSats = DefaultChannelSats
	}
	if opts.BuyerFundingSats == 0 {
		opts.BuyerFundingSats = DefaultBuyerFundingSats
	}

	toolsDir := ToolsDir()
	var missing []string
	for _, b := range binaries {
		if st, err := os.Stat(filepath.Join(toolsDir, b)); err != nil || st.IsDir() {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("\n"+
			"************************************************************\n"+
			"* REGTEST INTEGRATION TEST NOT RUN: missing %s in %s\n"+
			"* Build them with:  bash itest/build-tools.sh\n"+
			"* (or set TIMMY_TOOLS_DIR to a directory containing them)\n"+
			"************************************************************",
			strings.Join(missing, ", "), toolsDir)
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	dir, err := os.MkdirTemp("", "timmy-regtest-")
	if err != nil {
		t.Fatalf("regtest: create temp dir: %v", err)
	}
	n := &Network{Dir: dir, t: t}
	t.Cleanup(n.cleanup)

	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := n.start(ctx, toolsDir, opts); err != nil {
		n.failf("regtest: start network: %v", err)
	}
	n.StartDuration = time.Since(began)
	t.Logf("regtest: network ready in %s (dir %s)", n.StartDuration.Round(time.Millisecond), dir)
	return n
}

// failf reports a fatal error. The log tails are printed by cleanup, which
// runs because the test failed.
func (n *Network) failf(format string, args ...any) {
	n.t.Helper()
	n.t.Fatalf(format, args...)
}

func (n *Network) logf(format string, args ...any) {
	n.t.Helper()
	n.t.Logf("regtest: "+format, args...)
}

// start brings up btcd, mines the initial chain, starts both lnd nodes,
// funds the buyer and opens the channel.
func (n *Network) start(ctx context.Context, toolsDir string, opts Options) error {
	ports, err := freePorts(7)
	if err != nil {
		return err
	}
	step := time.Now()
	lap := func(what string) {
		n.logf("%s in %s", what, time.Since(step).Round(time.Millisecond))
		step = time.Now()
	}

	if err := n.startBtcd(ctx, toolsDir, ports[0]); err != nil {
		return err
	}
	lap("btcd started")

	if _, err := n.Btcd.Generate(ctx, initialBlocks); err != nil {
		return fmt.Errorf("mine initial blocks: %w", err)
	}
	lap(fmt.Sprintf("mined %d blocks", initialBlocks))

	n.Service = n.newNode("service", ports[1], ports[2], ports[3])
	n.Buyer = n.newNode("buyer", ports[4], ports[5], ports[6])
	if err := n.startLnd(toolsDir, n.Service, opts.ExtraServiceArgs); err != nil {
		return err
	}
	if err := n.startLnd(toolsDir, n.Buyer, opts.ExtraBuyerArgs); err != nil {
		return err
	}
	for _, node := range []*Node{n.Service, n.Buyer} {
		info, err := node.waitReady(ctx)
		if err != nil {
			return err
		}
		node.PubKey = info.IdentityPubkey
	}
	lap("lnd nodes synced")

	if err := n.fund(ctx, n.Buyer, opts.BuyerFundingSats); err != nil {
		return err
	}
	if opts.ServiceFundingSats > 0 {
		if err := n.fund(ctx, n.Service, opts.ServiceFundingSats); err != nil {
			return err
		}
	}
	lap("wallets funded")

	if err := n.Buyer.ConnectPeer(ctx, n.Service); err != nil {
		return err
	}
	chanPoint, err := n.Buyer.OpenChannel(ctx, n.Service, opts.ChannelSats)
	if err != nil {
		return err
	}
	n.ChannelPoint = chanPoint
	if _, err := n.MineBlocks(ctx, 6); err != nil {
		return fmt.Errorf("confirm channel: %w", err)
	}
	if err := n.waitChannelActive(ctx, chanPoint); err != nil {
		return err
	}
	routeCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = poll(routeCtx, 100*time.Millisecond, func() (bool, error) {
		err := n.Buyer.CanPay(routeCtx, n.Service, 1000)
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("wait for buyer to find a route to service: %w", err)
	}
	lap("channel " + chanPoint + " active and routable")
	return nil
}

func (n *Network) startBtcd(ctx context.Context, toolsDir string, rpcPort int) error {
	bdir := filepath.Join(n.Dir, "btcd")
	faucet, err := opTrueP2WSHAddress("bcrt")
	if err != nil {
		return fmt.Errorf("faucet address: %w", err)
	}
	pass, err := randomHex(16)
	if err != nil {
		return err
	}
	b := &Btcd{
		RPCHost:      fmt.Sprintf("127.0.0.1:%d", rpcPort),
		RPCUser:      rpcUser,
		RPCPass:      pass,
		RPCCertPath:  filepath.Join(bdir, "rpc.cert"),
		LogPath:      filepath.Join(n.Dir, "btcd.log"),
		nextCoinbase: 1,
	}
	b.proc, err = startProcess("btcd", filepath.Join(toolsDir, "btcd"), filepath.Join(bdir, "home"), b.LogPath,
		"--regtest",
		"--datadir="+filepath.Join(bdir, "data"),
		"--logdir="+filepath.Join(bdir, "logs"),
		"--rpclisten="+b.RPCHost,
		"--rpcuser="+b.RPCUser,
		"--rpcpass="+b.RPCPass,
		"--rpccert="+b.RPCCertPath,
		"--rpckey="+filepath.Join(bdir, "rpc.key"),
		"--txindex",
		"--nolisten",
		"--miningaddr="+faucet,
		"--debuglevel=info",
	)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, b.proc)
	n.Btcd = b

	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return b.waitReady(waitCtx)
}

func (n *Network) newNode(name string, p2p, grpc, rest int) *Node {
	dir := filepath.Join(n.Dir, name)
	return &Node{
		Name:         name,
		RESTURL:      fmt.Sprintf("https://127.0.0.1:%d", rest),
		GRPCAddr:     fmt.Sprintf("127.0.0.1:%d", grpc),
		P2PAddr:      fmt.Sprintf("127.0.0.1:%d", p2p),
		MacaroonPath: filepath.Join(dir, "data", "chain", "bitcoin", "regtest", "admin.macaroon"),
		TLSCertPath:  filepath.Join(dir, "tls.cert"),
		Dir:          dir,
		LogPath:      filepath.Join(n.Dir, name+".log"),
	}
}

func (n *Network) startLnd(toolsDir string, node *Node, extra []string) error {
	args := []string{
		"--lnddir=" + node.Dir,
		"--alias=" + node.Name,
		"--noseedbackup",
		"--bitcoin.regtest",
		"--bitcoin.node=btcd",
		"--btcd.rpchost=" + n.Btcd.RPCHost,
		"--btcd.rpcuser=" + n.Btcd.RPCUser,
		"--btcd.rpcpass=" + n.Btcd.RPCPass,
		"--btcd.rpccert=" + n.Btcd.RPCCertPath,
		"--listen=" + node.P2PAddr,
		"--rpclisten=" + node.GRPCAddr,
		"--restlisten=" + strings.TrimPrefix(node.RESTURL, "https://"),
		"--tlsextraip=127.0.0.1",
		"--nobootstrap",
		"--debuglevel=info",
		"--accept-keysend",
		"--maxpendingchannels=10",
		"--trickledelay=50",
		// A nearly full CI disk must not make lnd shut itself down
		// mid-test.
		"--healthcheck.diskspace.attempts=0",
	}
	args = append(args, extra...)
	proc, err := startProcess("lnd-"+node.Name, filepath.Join(toolsDir, "lnd"), filepath.Join(node.Dir, "home"), node.LogPath, args...)
	if err != nil {
		return err
	}
	node.proc = proc
	n.procs = append(n.procs, proc)
	return nil
}

// fund sends sats to node's wallet, mines a block and waits until the
// wallet reports them confirmed.
func (n *Network) fund(ctx context.Context, node *Node, sats int64) error {
	addr, err := node.NewAddress(ctx)
	if err != nil {
		return fmt.Errorf("fund %s: %w", node.Name, err)
	}
	before, _, err := node.WalletBalanceSats(ctx)
	if err != nil {
		return fmt.Errorf("fund %s: %w", node.Name, err)
	}
	if _, err := n.Btcd.SendCoins(ctx, addr, sats); err != nil {
		return fmt.Errorf("fund %s: %w", node.Name, err)
	}
	if _, err := n.MineBlocks(ctx, 1); err != nil {
		return fmt.Errorf("fund %s: %w", node.Name, err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = poll(waitCtx, 100*time.Millisecond, func() (bool, error) {
		confirmed, _, err := node.WalletBalanceSats(waitCtx)
		if err != nil {
			return false, err
		}
		if confirmed < before+sats {
			return false, fmt.Errorf("confirmed balance %d, want %d", confirmed, before+sats)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("fund %s: wait for confirmed balance: %w", node.Name, err)
	}
	return nil
}

// waitChannelActive waits until both nodes list the channel as active.
func (n *Network) waitChannelActive(ctx context.Context, chanPoint string) error {
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, node := range []*Node{n.Buyer, n.Service} {
		err := poll(waitCtx, 100*time.Millisecond, func() (bool, error) {
			chans, err := node.ListChannels(waitCtx)
			if err != nil {
				return false, err
			}
			for _, c := range chans {
				if c.ChannelPoint == chanPoint && c.Active {
					return true, nil
				}
			}
			return false, fmt.Errorf("channel %s not active yet (%d open channels)", chanPoint, len(chans))
		})
		if err != nil {
			return fmt.Errorf("wait for channel active on %s: %w", node.Name, err)
		}
	}
	return nil
}

// Mine mines blocks and waits until both lnd nodes have processed them,
// failing the test on error. Call it only from the test's goroutine.
func (n *Network) Mine(blocks int) []string {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hashes, err := n.MineBlocks(ctx, blocks)
	if err != nil {
		n.t.Fatalf("regtest: mine %d blocks: %v", blocks, err)
	}
	return hashes
}

// MineBlocks mines blocks and waits until both lnd nodes are synced to the
// new tip, returning the block hashes. Unlike Mine it is safe to call from
// any goroutine.
func (n *Network) MineBlocks(ctx context.Context, blocks int) ([]string, error) {
	hashes, err := n.Btcd.Generate(ctx, blocks)
	if err != nil {
		return nil, err
	}
	height, err := n.Btcd.BlockCount(ctx)
	if err != nil {
		return nil, fmt.Errorf("mine: %w", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, node := range []*Node{n.Service, n.Buyer} {
		if node == nil || node.client == nil {
			continue
		}
		if err := node.waitHeight(waitCtx, height); err != nil {
			return nil, fmt.Errorf("mine: wait for %s to reach height %d: %w", node.Name, height, err)
		}
	}
	return hashes, nil
}

// SendCoins pays sats on-chain to addr from the harness faucet. The
// transaction is unconfirmed until blocks are mined.
func (n *Network) SendCoins(ctx context.Context, addr string, sats int64) (string, error) {
	return n.Btcd.SendCoins(ctx, addr, sats)
}

// cleanup stops every daemon (lnd nodes first, in parallel, then btcd),
// prints log tails if the test failed, and removes the directory unless it
// should be kept.
func (n *Network) cleanup() {
	var wg sync.WaitGroup
	for _, p := range n.procs {
		if p.name == "btcd" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
	for _, p := range n.procs {
		p.stop()
	}

	keep := os.Getenv("TIMMY_ITEST_KEEP") != ""
	if n.t.Failed() {
		for _, p := range n.procs {
			n.t.Logf("regtest: ===== last %d lines of %s (%s) =====\n%s", logTailLines, p.name, p.logPath, tailLog(p.logPath, logTailLines))
		}
		keep = true
	}
	if keep {
		n.t.Logf("regtest: keeping network directory %s", n.Dir)
		return
	}
	if err := os.RemoveAll(n.Dir); err != nil {
		n.t.Logf("regtest: remove %s: %v", n.Dir, err)
	}
}

// freePorts reserves count distinct loopback TCP ports by listening on port
// 0, then releases them for the daemons. Another process could grab one in
// between, which is unlikely enough on a test machine to accept.
func freePorts(count int) ([]int, error) {
	var (
		listeners []net.Listener
		ports     []int
	)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range count {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve free port: %w", err)
		}
		listeners = append(listeners, l)
		addr, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			return nil, errors.New("reserve free port: listener has no TCP address")
		}
		ports = append(ports, addr.Port)
	}
	return ports, nil
}

func randomHex(nbytes int) (string, error) {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}
