package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/taps"
)

// serveGotaps runs a gotaps echo server on addr until ctx ends: every
// received message is sent back on its connection. framer is "length"
// (4-byte length prefix) or "none" (raw byte stream, echoed as received).
// It prints "listening on HOST:PORT" once bound.
func serveGotaps(ctx context.Context, addr, framer string, out io.Writer) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("-serve %q: want IP:PORT: %w", addr, err)
	}
	sys := taps.NewSystem()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sys.Shutdown(sctx)
	}()
	pre := taps.NewPreconnection(taps.WithSystem(sys), noSecurity(),
		taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithIPAddress(ap.Addr().String()).WithPort(ap.Port())))
	switch framer {
	case "length":
		pre.AddFramer(framers.NewLengthPrefix())
	case "none":
	default:
		return fmt.Errorf("-framer %q: want length or none", framer)
	}
	ln, err := pre.Listen(ctx)
	if err != nil {
		return err
	}
	ln.OnConnectionReceived(func(_ *taps.Listener, c *taps.Connection) { go gotapsEcho(c) })
	bound, _ := ln.LocalEndpoints()[0].Addr()
	fmt.Fprintf(out, "listening on %s\n", bound)
	<-ctx.Done()
	ln.Stop()
	return nil
}

// serveRawEcho runs the raw Go peer (goroutine per connection, same
// framing) on addr until ctx ends.
func serveRawEcho(ctx context.Context, addr string, out io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "listening on %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			rawEcho(c)
		}()
	}
}

// clientResult is what -client prints (one JSON line).
type clientResult struct {
	Rate  float64 `json:"rate"`
	P50   float64 `json:"p50_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Conns int     `json:"conns"`
}

// runClient drives addr with conns raw closed-loop 64 B echo clients for d.
func runClient(addr string, conns int, d time.Duration, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	var rts []func() (time.Duration, error)
	for i := 0; i < conns; i++ {
		c, rt, err := rawEchoClient(ctx, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		rts = append(rts, rt)
	}
	h, rate, err := parallelLoop(ctx, d, rts)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(clientResult{Rate: rate, P50: us(h.quantile(0.5)),
		P99: us(h.quantile(0.99)), P999: us(h.quantile(0.999)), Conns: conns})
}

// crossProcess starts `tapsbench serveFlag 127.0.0.1:0` and drives it with
// `tapsbench -client` in another process; pin prefixes both commands.
func crossProcess(ctx context.Context, serveFlag string, conns int, d time.Duration, pin []string) (clientResult, error) {
	var cr clientResult
	exe, err := os.Executable()
	if err != nil {
		return cr, err
	}
	command := func(args ...string) *exec.Cmd {
		all := append(append([]string{}, pin...), exe)
		all = append(all, args...)
		return exec.CommandContext(ctx, all[0], all[1:]...)
	}
	srv := command(serveFlag, "127.0.0.1:0")
	var srvErr bytes.Buffer
	srv.Stderr = &srvErr
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return cr, err
	}
	if err := srv.Start(); err != nil {
		return cr, err
	}
	defer func() {
		_ = srv.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}()
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var addr string
	select {
	case l, ok := <-line:
		if !ok || !strings.HasPrefix(l, "listening on ") {
			return cr, fmt.Errorf("server %s did not start: %q %s", serveFlag, l, srvErr.String())
		}
		addr = strings.TrimPrefix(l, "listening on ")
	case <-time.After(10 * time.Second):
		return cr, fmt.Errorf("server %s printed no address in 10 s", serveFlag)
	}
	cl := command("-client", addr, "-conns", fmt.Sprint(conns), "-duration", d.String())
	var clErr bytes.Buffer
	cl.Stderr = &clErr
	outb, err := cl.Output()
	if err != nil {
		return cr, fmt.Errorf("client: %w: %s", err, clErr.String())
	}
	if err := json.Unmarshal(bytes.TrimSpace(outb), &cr); err != nil {
		return cr, fmt.Errorf("client output %q: %w", outb, err)
	}
	return cr, nil
}

func crossRows(ctx context.Context, w string, conns int, d time.Duration, pin []string, target string) (out []Result) {
	for _, s := range []struct{ impl, flag string }{{implRaw, "-serve-raw"}, {implTaps, "-serve"}} {
		cr, err := crossProcess(ctx, s.flag, conns, d, pin)
		if err != nil {
			out = append(out, errRow(w, s.impl, err))
			continue
		}
		out = append(out,
			res(w, s.impl, "rtt_p50", cr.P50, "us"),
			res(w, s.impl, "rtt_p99", cr.P99, "us"),
			res(w, s.impl, "rtt_p999", cr.P999, "us"),
			res(w, s.impl, "throughput", cr.Rate, "rt/s"))
	}
	judgeRatio(out, implTaps, implRaw, "throughput", target)
	judgeRatio(out, implTaps, implRaw, "rtt_p50", "")
	return out
}

func runW14(ctx context.Context, p params) []Result {
	return crossRows(ctx, "W14", 50, p.w14Dur, nil, ">= 0.9")
}

func runW15(ctx context.Context, p params) []Result {
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return []Result{errRow("W15", "all", errors.New("skipped: taskset not found"))}
	}
	return crossRows(ctx, "W15", 1, p.w14Dur, []string{ts, "-c", "1"}, ">= 1.0")
}
