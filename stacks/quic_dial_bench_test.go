package stacks

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/quic-go/quic-go"
)

// BenchmarkQUICDial is one full QUIC handshake (no session resumption) to
// a raw quic-go listener on loopback, up to an opened stream: raw quic-go
// (DialAddr, OpenStreamSync) against the QUIC stack's Dial (its socket,
// options, ICMP watch, TLS config and stream), without any actor. The
// close is not timed. The same listener serves both, so the difference is
// the client (tapsbench W11's handshake, the stack's share of it).
func BenchmarkQUICDial(b *testing.B) {
	pki := newTestPKI(b)
	srvTLS := pki.serverConfig()
	srvTLS.NextProtos = []string{DefaultQUICALPN}
	udp, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback4))
	if err != nil {
		b.Fatal(err)
	}
	defer udp.Close()
	str := &quic.Transport{Conn: udp}
	defer str.Close() // returns once its goroutines have
	ln, err := str.Listen(srvTLS, nil)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() { <-c.Context().Done() }) // until the client closes
		}
	})
	remote := addrPort(b, ln.Addr())
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) {
		conf := pki.clientConfig()
		conf.NextProtos, conf.ServerName = []string{DefaultQUICALPN}, "127.0.0.1"
		addr := net.UDPAddrFromAddrPort(remote).String()
		b.ReportAllocs()
		for b.Loop() {
			c, err := quic.DialAddr(ctx, addr, conf, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.OpenStreamSync(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = c.CloseWithError(0, "")
			<-c.Context().Done()
			b.StartTimer()
		}
	})
	b.Run("stack", func(b *testing.B) {
		opts := Options{TLS: pki.clientConfig()}
		b.ReportAllocs()
		for b.Loop() {
			t, err := QUIC().Dial(ctx, remote, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = t.Abort()
			waitQUICDone(b, t)
			b.StartTimer()
		}
	})
}
