// Command timmy is Timmy's one binary: the service (serve, migrate) and a
// client for its API (job, dev pay). Run `timmy help` for usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `timmy sells AI agent work for Bitcoin Lightning payments.

Service:
  timmy serve                          serve the API on PORT (default 8080)
  timmy migrate                        apply database migrations and exit

Client (talks to TIMMY_URL, default http://localhost:8080):
  timmy job create "<request>" [--wait] create a job; print its invoice and QR code;
                                       with --wait, follow it until it ends
  timmy job get <id>                   print a job
  timmy job refund <id> <bolt11>       claim a job's refund to your invoice
  timmy dev pay <paymentHash>          pay a stub invoice (development only)

Configuration is by environment variable; see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var exit exitCode
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case err != nil:
		fmt.Fprintln(os.Stderr, "timmy:", err)
		os.Exit(1)
	}
}

// exitCode ends the program with a status and no further message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	switch args[0] {
	case "serve":
		return serve(ctx, stderr)
	case "migrate":
		return migrate(ctx, stdout)
	case "job":
		return jobCommand(ctx, args[1:], stdout, stderr)
	case "dev":
		return devCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "timmy: unknown command %q\n\n%s", args[0], usage)
	return exitCode(2)
}
