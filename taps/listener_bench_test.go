package taps

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
)

// The accept benchmarks are tapsbench W10 (listener accept rate): 4
// dialers each keep their last 128 connections open, closing the oldest
// beyond that, while the listener receives each connection and closes it
// from a goroutine of its own. The dialers run in a child process (this
// test binary, TestAcceptStormDialer), so that the CPU time reported
// (cpu-ns/op: user and system time of this process per connection, a
// steadier figure than the wall time on a busy machine) is the listening
// side's alone.

const acceptStormEnv = "GOTAPS_ACCEPT_STORM" // "addr n" for the dialer process

// TestAcceptStormDialer is the dialer process of the accept benchmarks; it
// does nothing in an ordinary test run.
func TestAcceptStormDialer(t *testing.T) {
	spec := os.Getenv(acceptStormEnv)
	if spec == "" {
		t.Skip("the accept benchmarks' dialer process")
	}
	var addr string
	var n int64
	if _, err := fmt.Sscan(spec, &addr, &n); err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var d net.Dialer
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for next.Add(1) <= n {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				held = append(held, c)
				if len(held) > 128 {
					held[0].Close()
					held = held[1:]
				}
			}
		})
	}
	wg.Wait()
}

// acceptStorm runs the dialer process against addr for b.N connections and
// waits until done is closed (the listening side has seen them all).
func acceptStorm(b *testing.B, addr string, got *atomic.Int64, done <-chan struct{}) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptStormDialer$")
	cmd.Env = append(os.Environ(), acceptStormEnv+"="+addr+" "+strconv.Itoa(b.N))
	cmd.Stderr = os.Stderr
	cpu0, u0, g0 := cpuTime(), userTime(), goroutinesCreated()
	b.ResetTimer()
	if err := cmd.Run(); err != nil {
		b.Fatalf("dialer process: %v", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.Fatalf("%d of %d connections received", got.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(userTime()-u0)/float64(b.N), "user-ns/op")
	b.ReportMetric(float64(goroutinesCreated()-g0)/float64(b.N), "goroutines/op")
}

// goroutinesCreated is how many goroutines this process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// BenchmarkAcceptClose is W10 on gotaps: a length-prefix Listener whose
// ConnectionReceived handler closes each connection on a goroutine of its
// own. The connection is closed gracefully: its FIN goes out at once, and
// it ends when the peer's comes.
func BenchmarkAcceptClose(b *testing.B) {
	for _, framed := range []bool{true, false} {
		name := "framer"
		if !framed {
			name = "noframer"
		}
		b.Run(name, func(b *testing.B) {
			sys := NewSystem()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = sys.Shutdown(ctx)
			}()
			pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(NewDisabledSecurityParameters()),
				WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
			if framed {
				pre.AddFramer(framers.NewLengthPrefix())
			}
			ln, err := pre.Listen(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			var got atomic.Int64
			done := make(chan struct{})
			n := int64(b.N)
			ln.OnConnectionReceived(func(_ *Listener, c *Connection) {
				go func() {
					if got.Add(1) == n {
						close(done)
					}
					_ = c.Close()
				}()
			})
			b.ReportAllocs()
			acceptStorm(b, ln.Addr().String(), &got, done)
		})
	}
}

// BenchmarkAcceptCloseRaw is BenchmarkAcceptClose's raw Go counterpart
// (W10's raw side): an accept loop, and a goroutine per connection that
// closes it.
func BenchmarkAcceptCloseRaw(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer l.Close()
	var got atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				if got.Add(1) == n {
					close(done)
				}
				c.Close()
			})
		}
	})
	b.ReportAllocs()
	acceptStorm(b, l.Addr().String(), &got, done)
}
