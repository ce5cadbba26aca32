package taps

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// rawQUICWithoutDatagrams is a quic-go server on 127.0.0.1 that does not
// enable datagrams (RFC 9221); sessions gets each session it accepts
// (early: before its handshake completes, so that a session the client
// closes right after the handshake is seen too).
func rawQUICWithoutDatagrams(t *testing.T, pki *testPKI) (port uint16, sessions <-chan *quic.Conn) {
	t.Helper()
	ql, err := quic.ListenAddrEarly("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pki.server},
		NextProtos: []string{"gotaps-test"}}, &quic.Config{EnableDatagrams: false})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan *quic.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ql.Accept(ctx)
			if err != nil {
				return
			}
			select {
			case ch <- c:
			default:
				_ = c.CloseWithError(0, "")
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		for {
			select {
			case c := <-ch:
				_ = c.CloseWithError(0, "")
			default:
				_ = ql.Close()
				return
			}
		}
	})
	return uint16(ql.Addr().(*net.UDPAddr).Port), ch
}

// TestQUICRequirePerMsgReliabilityFailsWithoutThePeersDatagrams:
// perMsgReliability Required on QUIC needs QUIC datagrams, which the peer
// must enable too (RFC 9221 transport parameter, negotiated in the
// handshake). Against a peer that does not (a raw quic-go server without
// EnableDatagrams, a gotaps Listener Prohibiting perMsgReliability) the
// attempt fails once the handshake tells, and Initiate returns an
// EstablishmentError unwrapping to ErrDatagramsNotNegotiated and
// errors.ErrUnsupported, rather than a Ready connection reading
// perMsgReliability back false; the session is closed (the raw server sees
// it end). With Prefer the connection is established and reads it back
// false.
func TestQUICRequirePerMsgReliabilityFailsWithoutThePeersDatagrams(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	rawPort, sessions := rawQUICWithoutDatagrams(t, pki)
	stp := quicOnly(t)
	require.NoError(t, stp.Prohibit(PerMsgReliability))
	ln, _ := quicEchoServer(t, sys, pki, stp)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	for _, peer := range []struct {
		name string
		port uint16
		raw  bool
	}{{"raw quic-go without datagrams", rawPort, true}, {"Listener Prohibiting perMsgReliability", ap.Port(), false}} {
		t.Run(peer.name, func(t *testing.T) {
			ctx := testCtx(t)
			tp := quicOnly(t)
			require.NoError(t, tp.Require(PerMsgReliability))
			c, err := securePreTo(sys, peer.port, pki.clientSec(), tp).Initiate(ctx)
			if err == nil {
				c.Abort()
				<-c.Done()
				t.Fatalf("Require perMsgReliability established a connection whose perMsgReliability reads back %v",
					c.GetProperties().Selected[PerMsgReliability])
			}
			var ee *EstablishmentError
			require.ErrorAs(t, err, &ee)
			require.ErrorIs(t, err, ErrDatagramsNotNegotiated)
			require.ErrorIs(t, err, errors.ErrUnsupported)
			require.NotEmpty(t, ee.Attempts)
			for _, a := range ee.Attempts {
				require.Equal(t, "quic", a.Stack)
			}
			if peer.raw {
				select {
				case s := <-sessions:
					select {
					case <-s.Context().Done(): // the client closed the session it could not use
					case <-ctx.Done():
						t.Fatal("the refused session stayed open")
					}
				case <-ctx.Done():
					t.Fatal("the raw server accepted no session")
				}
			}

			tp = quicOnly(t)
			require.NoError(t, tp.Prefer(PerMsgReliability))
			c, err = securePreTo(sys, peer.port, pki.clientSec(), tp).Initiate(ctx)
			require.NoError(t, err, "Prefer goes without datagrams")
			defer func() { c.Abort(); <-c.Done() }()
			require.Equal(t, "quic", c.GetProperties().Stack)
			require.False(t, c.GetProperties().Selected[PerMsgReliability])
			if !peer.raw {
				roundTrip(t, c, "reliable")
			}
		})
	}
}

// TestQUICListenerRequiringPerMsgReliabilityRefusesPeersWithoutDatagrams:
// the Listener's side of the same: a QUIC Listener Requiring
// perMsgReliability closes the session of a client that did not enable
// datagrams (a raw quic-go client, a gotaps client Prohibiting
// perMsgReliability) rather than hand over a Connection that reads
// perMsgReliability back false; a client with datagrams is accepted and
// reads it back true.
func TestQUICListenerRequiringPerMsgReliabilityRefusesPeersWithoutDatagrams(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ctx := testCtx(t)
	stp := quicOnly(t)
	require.NoError(t, stp.Require(PerMsgReliability))
	ln := quicListen(t, ctx, sys, pki, stp)
	ap, _ := ln.LocalEndpoints()[0].Addr()

	raw, err := quic.DialAddr(ctx, ap.String(), &tls.Config{RootCAs: pki.pool, ServerName: "localhost",
		NextProtos: []string{"gotaps-test"}}, &quic.Config{EnableDatagrams: false})
	if err == nil {
		defer raw.CloseWithError(0, "")
		if str, err := raw.OpenStream(); err == nil { // (fails once the session is closed)
			_, _ = str.Write([]byte{0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}) // a length-prefixed message
		}
		select {
		case <-raw.Context().Done(): // the Listener closed the session
		case <-ctx.Done():
			t.Fatal("the Listener kept the session of a client without datagrams")
		}
	}
	tp := quicOnly(t)
	require.NoError(t, tp.Prohibit(PerMsgReliability))
	if c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx); err == nil {
		// the client may be Ready before the Listener closes the session
		_ = c.Send(ctx, []byte("hello"), nil)
		select {
		case <-c.Done():
		case <-ctx.Done():
			c.Abort()
			<-c.Done()
			t.Fatal("the Listener kept the session of a client Prohibiting perMsgReliability")
		}
	}
	if s, err := acceptShort(ln); err == nil {
		defer func() { s.Abort(); <-s.Done() }()
		t.Fatalf("the Listener accepted a Connection whose perMsgReliability reads back %v",
			s.GetProperties().Selected[PerMsgReliability])
	}

	tp = quicOnly(t)
	require.NoError(t, tp.Prefer(PerMsgReliability))
	c, err := securePre(sys, ln, pki.clientSec(), tp).Initiate(ctx)
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))
	s, err := ln.Accept(ctx)
	require.NoError(t, err)
	defer func() { s.Abort(); <-s.Done() }()
	require.True(t, s.GetProperties().Selected[PerMsgReliability])
	require.True(t, c.GetProperties().Selected[PerMsgReliability])
}
