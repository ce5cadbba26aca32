//go:build unix

package taps

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEchoCPU measures the CPU time of a 64 B echo (length-prefixed)
// served by gotaps to raw Go clients in the same process, closed loop, as
// tapsbench W14/W15 do across processes; BenchmarkEchoCPURaw is the same
// with a raw Go server. user-ns/op and sys-ns/op are the process's CPU
// time per round trip (both sides): the difference between the two is
// what gotaps' server side costs above a raw Go server.
func BenchmarkEchoCPU(b *testing.B) {
	for _, conns := range []int{1, 50} {
		b.Run(connsName(conns), func(b *testing.B) {
			sys := NewSystem()
			defer sys.Shutdown(context.Background())
			ctx := context.Background()
			ln, ap := benchListener(b, sys)
			defer ln.Stop()
			ln.OnConnectionReceived(func(_ *Listener, c *Connection) {
				go func() {
					defer c.Abort()
					for {
						m, err := c.Receive(ctx)
						if err != nil || c.Send(ctx, m.Data, nil) != nil {
							return
						}
						m.Release() // as a raw server reuses its buffer
					}
				}()
			})
			echoCPULoop(b, ap.String(), conns)
		})
	}
}

func BenchmarkEchoCPURaw(b *testing.B) {
	for _, conns := range []int{1, 50} {
		b.Run(connsName(conns), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						var hdr [4]byte
						buf := make([]byte, 64<<10)
						for {
							if _, err := io.ReadFull(c, hdr[:]); err != nil {
								return
							}
							n := binary.BigEndian.Uint32(hdr[:])
							if _, err := io.ReadFull(c, buf[:n]); err != nil {
								return
							}
							if _, err := c.Write(append(hdr[:], buf[:n]...)); err != nil {
								return
							}
						}
					}()
				}
			}()
			echoCPULoop(b, ln.Addr().String(), conns)
		})
	}
}

func connsName(n int) string {
	if n == 1 {
		return "conns=1"
	}
	return "conns=50"
}

// echoCPULoop runs b.N round trips over conns raw clients of addr and
// reports the CPU time per round trip.
func echoCPULoop(b *testing.B, addr string, conns int) {
	var cs []net.Conn
	for i := 0; i < conns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	msg := make([]byte, 4+64)
	binary.BigEndian.PutUint32(msg, 64)
	rt := func(c net.Conn, in []byte) error {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, in)
		return err
	}
	for _, c := range cs { // warm up
		in := make([]byte, len(msg))
		for j := 0; j < 50; j++ {
			if err := rt(c, in); err != nil {
				b.Fatal(err)
			}
		}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := make([]byte, len(msg))
			for left.Add(-1) >= 0 {
				if err := rt(c, in); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	b.ReportMetric(float64(tv(ru1.Utime)-tv(ru0.Utime))/float64(b.N), "user-ns/op")
	b.ReportMetric(float64(tv(ru1.Stime)-tv(ru0.Stime))/float64(b.N), "sys-ns/op")
}
