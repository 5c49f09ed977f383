//go:build itest

// Package regtest starts a throwaway Bitcoin regtest Lightning network for
// Timmy's integration tests: one btcd and two lnd v0.18.5 nodes, "service"
// (the lnd the Timmy service talks to) and "buyer" (the lnd that pays), with
// a funded 5,000,000 sat channel from buyer to service.
//
// Every file is behind the itest build tag, so `go test ./...` never
// compiles it. The package uses only the standard library: it drives lnd
// through its REST API and btcd through JSON-RPC over HTTPS, so the main
// module needs no lnd or btcd dependencies.
//
// # Running
//
//	bash itest/build-tools.sh                       # once; cached afterwards
//	go test -tags itest -count=1 -v ./itest/regtest/
//
// build-tools.sh builds btcd, btcctl, lnd and lncli (versions pinned in
// itest/tools/go.mod) into $TIMMY_TOOLS_DIR or $HOME/.cache/timmy/bin.
// Start looks there; if the binaries are missing it skips the test with a
// loud message, or fails it when the CI environment variable is set.
//
// Set TIMMY_ITEST_KEEP=1 to keep the network directory (data and logs of
// all three daemons) after the test; it is always kept, and the tail of each
// log printed, when the test fails.
//
// # Using it
//
// Starting a network takes about 15-25 seconds, so start one per test
// function and run the checks as subtests:
//
//	func TestService(t *testing.T) {
//		net := regtest.Start(t)
//		// Point the service's LND adapter at net.Service.RESTURL,
//		// net.Service.MacaroonPath and net.Service.TLSCertPath.
//		t.Run("pay", func(t *testing.T) {
//			res, err := net.Buyer.PayInvoice(ctx, bolt11)
//			...
//		})
//	}
//
// For hold invoices use Node.PayInvoiceAsync, which returns once lnd has
// accepted the payment; Payment.Wait returns the final SUCCEEDED or FAILED
// result after the service settles or cancels. A FAILED payment is a
// result, not an error.
//
// Network.Mine mines blocks and waits until both nodes have seen them;
// Network.SendCoins pays on-chain from a faucet (coinbases mined to an
// anyone-can-spend P2WSH(OP_TRUE) address, since btcd has no wallet).
//
// # lnd REST wire format (v0.18.5)
//
// These are the details an LND REST client has to get right; the tests in
// this package exercise each of them.
//
//   - Authentication: header Grpc-Metadata-macaroon with the macaroon file's
//     bytes hex encoded. TLS: lnd's tls.cert is self-signed; trust exactly
//     it (x509 pool with that one certificate). It covers 127.0.0.1 and
//     localhost.
//   - JSON uses proto field names (snake_case) and always includes every
//     field. int64/uint64 values are JSON strings ("1000"), int32/uint32
//     are numbers; requests may use either. Enums are names ("SETTLED").
//   - bytes fields are standard base64 in JSON, both ways (r_hash, hash,
//     preimage, r_preimage, payment_addr). Exception: the router's Payment
//     message has payment_hash and payment_preimage as hex strings.
//   - bytes in URL paths or queries are base64 too, and must be URL-safe
//     with padding: /v2/invoices/subscribe/{r_hash} and
//     /v2/invoices/lookup?payment_hash=. Exception: /v1/invoice/{r_hash_str}
//     takes hex.
//   - Unary errors are non-2xx with {"code":N,"message":"...","details":[]}
//     where code is the gRPC code (lookup of an unknown invoice: HTTP 404,
//     code 5, "unable to locate invoice").
//   - Streams (server-streaming calls) answer with one JSON object per
//     message, newline separated: {"result":{...}}. An error before the
//     first message becomes a non-2xx response with body
//     {"error":{"code":N,"message":"...","details":[]}}; a later one is an
//     {"error":{...}} object in the stream. HTTP headers are only sent with
//     the first message, so an HTTP client's Do blocks until then (on
//     /v1/invoices/subscribe that is the first invoice event).
//   - Invoice.amt_paid is deprecated and in millisatoshis; use amt_paid_sat
//     or amt_paid_msat.
//   - A payment's status becomes SUCCEEDED or FAILED before the HTLC is
//     removed from the channel commitment; ChannelBalanceSats read right
//     then can be off by the HTLC's commitment fee share. Use
//     Node.WaitChannelsIdle before exact balance comparisons.
//
// itest/README.md shows the exact request and response shapes of the
// hold-invoice, invoice-stream and payment endpoints.
package regtest
