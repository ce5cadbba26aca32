package taps

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/gotaps/gotaps/framers"
)

// BenchmarkBulkSend: a gotaps sender, a raw Go receiver (1 MiB messages).
func BenchmarkBulkSend(b *testing.B) {
	sys := NewSystem()
	defer sys.Shutdown(context.Background())
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1<<20)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Send(context.Background(), payload, nil); err != nil {
			b.Fatal(err)
		}
	}
	c.Abort()
	<-c.Done()
}

// BenchmarkBulkReceive: a raw Go sender, a gotaps receiver (1 MiB and
// 64 KiB messages).
// With release, every message's buffer is handed back (Message.Release).
func BenchmarkBulkReceive(b *testing.B) {
	for _, size := range []int{1 << 20, 64 << 10} {
		for _, release := range []bool{false, true} {
			name := fmt.Sprintf("%dKiB", size>>10)
			if release {
				name += "/release"
			}
			b.Run(name, func(b *testing.B) { benchBulkReceive(b, size, release) })
		}
	}
}

func benchBulkReceive(b *testing.B, size int, release bool) {
	sys := NewSystem()
	defer sys.Shutdown(context.Background())
	ln, ap := benchListener(b, sys)
	raw, err := net.Dial("tcp", ap.String())
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	s, err := ln.Accept(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 4+size)
	binary.BigEndian.PutUint32(msg, uint32(size))
	go func() {
		for i := 0; i < b.N; i++ {
			if _, err := raw.Write(msg); err != nil {
				return
			}
		}
	}()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := s.Receive(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if release {
			m.Release()
		}
	}
	s.Abort()
	<-s.Done()
}

// BenchmarkEchoRTT: a gotaps client and a gotaps echo server in one
// process, 64 B messages, closed loop (tapsbench W5).
// With cancellable, both sides pass a ctx that can end (as tapsbench
// does): each inline read then registers for the ctx's end.
func BenchmarkEchoRTT(b *testing.B) {
	b.Run("background", func(b *testing.B) { benchEchoRTT(b, context.Background()) })
	b.Run("cancellable", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		benchEchoRTT(b, ctx)
	})
}

func benchEchoRTT(b *testing.B, ctx context.Context) {
	sys := NewSystem()
	defer sys.Shutdown(context.Background())
	ln, ap := benchListener(b, sys)
	go func() {
		s, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		for {
			m, err := s.Receive(ctx)
			if err != nil || s.Send(ctx, m.Data, nil) != nil {
				return
			}
		}
	}()
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(ctx)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Send(ctx, payload, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Receive(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.Abort()
	<-c.Done()
	ln.Stop()
}

// benchListener starts a length-prefix framed Listener on 127.0.0.1 and
// returns it with its address.
func benchListener(b *testing.B, sys *System) (*Listener, netip.AddrPort) {
	b.Helper()
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	ap, _ := ln.LocalEndpoints()[0].Addr()
	return ln, ap
}
