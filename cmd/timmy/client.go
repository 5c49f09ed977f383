package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/mdp/qrterminal/v3"

	"github.com/timmyhq/timmy/api"
)

// newClient returns the generated API client for TIMMY_URL.
func newClient() (*api.ClientWithResponses, string, error) {
	base := strings.TrimRight(os.Getenv("TIMMY_URL"), "/")
	if base == "" {
		base = "http://localhost:8080"
	}
	c, err := api.NewClientWithResponses(base, api.WithHTTPClient(&http.Client{Timeout: 5 * time.Minute}))
	if err != nil {
		return nil, "", fmt.Errorf("TIMMY_URL %q: %w", base, err)
	}
	return c, base, nil
}

// apiError turns a non-success response into an error with the server's
// message.
func apiError(status int, body []byte) error {
	var e api.Error
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("server said %d: %s", status, e.Error)
	}
	return fmt.Errorf("server said %d: %s", status, strings.TrimSpace(string(body)))
}

func jobCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	switch args[0] {
	case "create":
		var request []string
		wait := false
		for _, a := range args[1:] {
			switch a {
			case "--wait", "-wait", "-w":
				wait = true
			default:
				request = append(request, a)
			}
		}
		if len(request) != 1 {
			fmt.Fprintln(stderr, `usage: timmy job create "<request>" [--wait]`)
			return exitCode(2)
		}
		return createJob(ctx, request[0], wait, stdout)
	case "get":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: timmy job get <id>")
			return exitCode(2)
		}
		job, err := getJob(ctx, args[1])
		if err != nil {
			return err
		}
		return printJSON(stdout, job)
	case "refund":
		if len(args) != 3 {
			fmt.Fprintln(stderr, "usage: timmy job refund <id> <bolt11>")
			return exitCode(2)
		}
		return claimRefund(ctx, args[1], args[2], stdout)
	}
	fmt.Fprintf(stderr, "timmy job: unknown command %q\n", args[0])
	return exitCode(2)
}

func devCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "pay" {
		fmt.Fprintln(stderr, "usage: timmy dev pay <paymentHash>")
		return exitCode(2)
	}
	c, _, err := newClient()
	if err != nil {
		return err
	}
	resp, err := c.DevPayInvoiceWithResponse(ctx, args[1])
	if err != nil {
		return fmt.Errorf("pay: %w", err)
	}
	if resp.JSON200 == nil {
		return apiError(resp.StatusCode(), resp.Body)
	}
	fmt.Fprintf(stdout, "paid %s: invoice is %s\n", resp.JSON200.PaymentHash, resp.JSON200.Status)
	return nil
}

func createJob(ctx context.Context, request string, wait bool, out io.Writer) error {
	c, base, err := newClient()
	if err != nil {
		return err
	}
	resp, err := c.CreateJobWithResponse(ctx, api.CreateJobJSONRequestBody{Request: request})
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	if resp.JSON201 == nil {
		return apiError(resp.StatusCode(), resp.Body)
	}
	created := resp.JSON201
	fmt.Fprintf(out, "job %s created\n\n", created.JobId)
	printInvoice(out, "Eval fee", created.EvalInvoice, base)
	if !wait {
		fmt.Fprintf(out, "Follow it with: timmy job get %s\n", created.JobId)
		return nil
	}
	return follow(ctx, c, created.JobId, base, out)
}

// follow prints a job's progress until it ends. The service advances the
// job on its own; polling here only reads, to show the buyer what happened.
func follow(ctx context.Context, c *api.ClientWithResponses, id uuid.UUID, base string, out io.Writer) error {
	var last api.JobState
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		resp, err := c.GetJobWithResponse(ctx, id)
		if err != nil {
			return fmt.Errorf("get job: %w", err)
		}
		if resp.JSON200 == nil {
			return apiError(resp.StatusCode(), resp.Body)
		}
		job := resp.JSON200
		if job.State != last {
			last = job.State
			fmt.Fprintf(out, "[%s] %s\n", time.Now().Format("15:04:05"), job.State)
			switch job.State {
			case api.JobStateAwaitingWorkPayment:
				if b := job.PricingBreakdown; b != nil {
					fmt.Fprintf(out, "\nQuote: %s, ~%d input + ~%d output tokens, $%.6f tokens + $%.6f infra, %.0f%% margin, BTC at $%.0f (%s)\n",
						b.Model, b.EstimatedInputTokens, b.EstimatedOutputTokens, b.EstimatedCostUsd, b.InfraCostUsd, b.MarginPct, b.BtcPriceUsd, b.BtcPriceSource)
				}
				if job.WorkInvoice != nil {
					printInvoice(out, "Work fee", *job.WorkInvoice, base)
				}
			case api.JobStateComplete:
				fmt.Fprintf(out, "\n%s\n\n", deref(job.Result))
				if l := job.CostLedger; l != nil {
					fmt.Fprintf(out, "Ledger: %d input + %d output = %d tokens, actual cost $%.6f, charged %d sats at BTC $%.0f\n",
						l.ActualInputTokens, l.ActualOutputTokens, l.TotalTokens, l.ActualCostUsd, l.ChargedSats, l.BtcPriceUsd)
				}
				return nil
			case api.JobStateRejected:
				fmt.Fprintf(out, "rejected: %s\n", deref(job.Reason))
				return exitCode(1)
			case api.JobStateFailed, api.JobStateExpired:
				fmt.Fprintf(out, "%s: %s\n", job.State, deref(job.ErrorMessage))
				if job.Refund != nil {
					fmt.Fprintf(out, "refund: %d sats, %s; claim it with: timmy job refund %s <bolt11>\n", job.Refund.AmountSats, job.Refund.State, id)
				}
				return exitCode(1)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func printInvoice(out io.Writer, label string, inv api.InvoiceInfo, base string) {
	fmt.Fprintf(out, "%s: %d sats, expires %s\n\n", label, inv.AmountSats, inv.ExpiresAt.Local().Format(time.RFC1123))
	qrterminal.GenerateWithConfig(strings.ToUpper(inv.PaymentRequest), qrterminal.Config{
		Level: qrterminal.L, Writer: out, HalfBlocks: true,
		BlackChar: qrterminal.BLACK_BLACK, WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar: qrterminal.WHITE_WHITE, BlackWhiteChar: qrterminal.BLACK_WHITE, QuietZone: 1,
	})
	fmt.Fprintf(out, "\n%s\n\npayment hash: %s\n", inv.PaymentRequest, inv.PaymentHash)
	fmt.Fprintf(out, "(stub Lightning: pay it with `timmy dev pay %s` or POST %s/api/dev/stub/pay/%s)\n\n", inv.PaymentHash, base, inv.PaymentHash)
}

func getJob(ctx context.Context, id string) (*api.Job, error) {
	jobID, err := uuid.Parse(id)
	if err != nil {
		return nil, fmt.Errorf("%q is not a job id", id)
	}
	c, _, err := newClient()
	if err != nil {
		return nil, err
	}
	resp, err := c.GetJobWithResponse(ctx, jobID)
	if err != nil {
		return nil, fmt.Errorf("get job: %w", err)
	}
	if resp.JSON200 == nil {
		return nil, apiError(resp.StatusCode(), resp.Body)
	}
	return resp.JSON200, nil
}

func claimRefund(ctx context.Context, id, bolt11 string, out io.Writer) error {
	jobID, err := uuid.Parse(id)
	if err != nil {
		return fmt.Errorf("%q is not a job id", id)
	}
	c, _, err := newClient()
	if err != nil {
		return err
	}
	resp, err := c.ClaimRefundWithResponse(ctx, jobID, api.ClaimRefundJSONRequestBody{PaymentRequest: bolt11})
	if err != nil {
		return fmt.Errorf("claim refund: %w", err)
	}
	if resp.JSON200 == nil {
		return apiError(resp.StatusCode(), resp.Body)
	}
	return printJSON(out, resp.JSON200)
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
