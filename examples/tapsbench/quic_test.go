package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The W11 handshake loops report what they measured: resumed sessions and
// accepted 0-RTT data, for raw quic-go and gotaps alike.
func TestQUICHandshakeLoopsResumeAndUse0RTT(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pki, err := newQUICPKI()
	require.NoError(t, err)
	srv, err := newRawQUICServer(pki, rawQUICEcho)
	require.NoError(t, err)
	defer srv.close()
	env, err := newGotapsQUICEnv(ctx, pki, gotapsEcho)
	require.NoError(t, err)
	defer func() { require.NoError(t, env.close()) }()
	const n = 3 // the first handshake of each loop has no ticket yet
	first := make([]byte, msg64)

	_, resumed, zeroRTT, err := rawQUICDialLoop(ctx, srv.addr, pki.clientTLS(), n, nil, nil)
	require.NoError(t, err)
	require.Zero(t, resumed+zeroRTT, "no session cache: full handshakes")
	cache := pki.clientTLS()
	cache.ClientSessionCache = newTicketCache()
	_, resumed, _, err = rawQUICDialLoop(ctx, srv.addr, cache, n, nil, nil)
	require.NoError(t, err)
	require.Equal(t, n-1, resumed)
	if !raceDetector { // quic-go #4303: a stream opened while a 0-RTT handshake completes is a data race inside quic-go (the peer's transport parameters); this path is tested without -race
		_, resumed, zeroRTT, err = rawQUICDialLoop(ctx, srv.addr, cache, n, first, nil)
		require.NoError(t, err)
		require.Equal(t, n, resumed)
		require.Equal(t, n, zeroRTT)
	}

	_, resumed, zeroRTT, err = gotapsQUICInitiateLoop(ctx, env.quicPreconn(pki, true), n, nil, nil)
	require.NoError(t, err)
	require.Zero(t, resumed+zeroRTT, "isolateSession: full handshakes")
	_, resumed, zeroRTT, err = gotapsQUICInitiateLoop(ctx, env.quicPreconn(pki, false), n, nil, nil)
	require.NoError(t, err)
	require.Equal(t, n-1, resumed, "the System's session cache resumes")
	require.Zero(t, zeroRTT, "no early data without a safely replayable first message")
	if raceDetector {
		t.Log("0-RTT loops not run: " + "quic-go #4303: a stream opened while a 0-RTT handshake completes is a data race inside quic-go (the peer's transport parameters); this path is tested without -race")
		return
	}
	_, resumed, zeroRTT, err = gotapsQUICInitiateLoop(ctx, env.quicPreconn(pki, false), n, first, nil)
	require.NoError(t, err)
	require.Equal(t, n, resumed)
	require.Equal(t, n, zeroRTT, "InitiateWithSend of a safely replayable message rides 0-RTT")
}
