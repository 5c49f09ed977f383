package server

import (
	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/api"
)

// toAPIJob renders a job for buyers. It shows what fits the job's state:
// the eval invoice while it is unpaid and afterwards for the record, the work
// invoice with its quote, the reason, the result with its ledger, the error.
func toAPIJob(j *timmy.Job) api.Job {
	out := api.Job{
		JobId:     j.ID,
		State:     api.JobState(j.State),
		Request:   ptr(j.Request),
		CreatedAt: j.CreatedAt,
		UpdatedAt: j.UpdatedAt,
	}
	if j.EvalInvoice != nil {
		inv := toAPIInvoice(j.EvalInvoice)
		out.EvalInvoice = &inv
	}
	if j.WorkInvoice != nil {
		inv := toAPIInvoice(j.WorkInvoice)
		out.WorkInvoice = &inv
	}
	out.EvalModel = nonEmpty(j.EvalModel)
	out.Reason = nonEmpty(j.Reason)
	out.ErrorMessage = nonEmpty(j.ErrorMessage)
	if j.State == timmy.JobComplete {
		out.Result = ptr(j.Result)
	}
	if q := j.Quote; q != nil && j.WorkInvoice != nil {
		out.PricingBreakdown = &api.PricingBreakdown{
			Model:                 q.Model,
			EstimatedInputTokens:  q.EstimatedInputTokens,
			EstimatedOutputTokens: q.EstimatedOutputTokens,
			EstimatedCostUsd:      q.EstimatedCostUSD,
			InfraCostUsd:          q.InfraCostUSD,
			MarginPct:             q.MarginPct,
			BtcPriceUsd:           q.BTCPriceUSD,
			BtcPriceSource:        q.BTCPriceSource,
			AmountSats:            int64(q.AmountSats),
			QuoteExpiresAt:        j.WorkInvoice.ExpiresAt,
		}
	}
	if l := j.Ledger; l != nil {
		out.CostLedger = &api.CostLedger{
			Model:              nonEmpty(l.Model),
			ActualInputTokens:  l.ActualInputTokens,
			ActualOutputTokens: l.ActualOutputTokens,
			TotalTokens:        l.TotalTokens(),
			ActualCostUsd:      l.ActualCostUSD,
			ChargedSats:        int64(l.ChargedSats),
			BtcPriceUsd:        l.BTCPriceUSD,
			TokensEstimated:    ptr(l.TokensEstimated),
		}
	}
	if r := j.Refund; r != nil {
		ref := toAPIRefund(r)
		out.Refund = &ref
		if r.State != timmy.RefundPaid {
			out.RefundOwedSats = ptr(int64(r.AmountSats))
		}
	}
	return out
}

func toAPIInvoice(inv *timmy.Invoice) api.InvoiceInfo {
	status := api.InvoiceStatus(inv.Status)
	return api.InvoiceInfo{
		PaymentRequest: inv.PaymentRequest,
		PaymentHash:    inv.PaymentHash.String(),
		AmountSats:     int64(inv.AmountSats),
		ExpiresAt:      inv.ExpiresAt,
		Status:         &status,
		Hold:           ptr(inv.Hold),
	}
}

func toAPIRefund(r *timmy.Refund) api.Refund {
	return api.Refund{
		AmountSats:    int64(r.AmountSats),
		State:         api.RefundState(r.State),
		PaymentHash:   nonEmpty(r.PaymentHash),
		FailureReason: nonEmpty(r.FailureReason),
	}
}

func ptr[T any](v T) *T { return &v }

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
