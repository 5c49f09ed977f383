package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/timmyhq/timmy"
	"github.com/timmyhq/timmy/internal/env"
	"github.com/timmyhq/timmy/lightning/lnbits/lnbitstest"
	"github.com/timmyhq/timmy/lightning/lnd"
	"github.com/timmyhq/timmy/lightning/lnd/lndtest"
)

func TestLoadLightning(t *testing.T) {
	t.Parallel()
	ln, name, err := loadLightning(env.FromMap(nil), nil, nil)
	require.NoError(t, err)
	require.Nil(t, ln)
	require.Empty(t, name)

	_, _, err = loadLightning(env.FromMap(map[string]string{"LNBITS_URL": "http://x", "LND_REST_URL": "https://y"}), nil, nil)
	require.EqualError(t, err, "both LNBITS_URL and LND_REST_URL are set: choose one Lightning backend")

	fb := lnbitstest.New(t)
	ln, name, err = loadLightning(env.FromMap(fb.Env()), nil, nil)
	require.NoError(t, err)
	require.Equal(t, "lnbits", name)
	_, ok := ln.(timmy.Payer)
	require.True(t, ok)
	_, ok = ln.(timmy.HoldInvoices)
	require.False(t, ok)

	_, _, err = loadLightning(env.FromMap(map[string]string{"LNBITS_URL": fb.URL}), nil, nil)
	require.ErrorContains(t, err, "LNBITS_API_KEY")

	fl := lndtest.New(t)
	ln, name, err = loadLightning(env.FromMap(fl.Env()), lnd.NewMemoryCursors(), nil)
	require.NoError(t, err)
	require.Equal(t, "lnd", name)
	_, ok = ln.(timmy.HoldInvoices)
	require.True(t, ok)
	_, ok = ln.(timmy.InvoiceNotifier)
	require.True(t, ok)

	_, _, err = loadLightning(env.FromMap(map[string]string{"LND_REST_URL": fl.URL}), nil, nil)
	require.ErrorContains(t, err, "LND_MACAROON_PATH or LND_MACAROON_HEX")
}
