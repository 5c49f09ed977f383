package timmy

import "context"

// Pricer quotes the work fee for a request before the work runs, and costs
// the work after it ran.
type Pricer interface {
	// QuoteWork prices a request's work for the given model.
	QuoteWork(ctx context.Context, request, model string) (Quote, error)
	// ActualCostUSD is what the tokens in usage cost the service.
	ActualCostUSD(usage Usage) float64
}
