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
	Rate    float64  `json:"rate"`
	P50     float64  `json:"p50_us"`
	P99     float64  `json:"p99_us"`
	P999    float64  `json:"p999_us"`
	Conns   int      `json:"conns"`
	Seconds float64  `json:"seconds"` // measured time
	Hist    histDump `json:"hist"`    // every round trip's latency
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
	h, el, err := parallelLoop(ctx, d, rts)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(clientResult{Rate: float64(h.n) / el.Seconds(), P50: us(h.quantile(0.5)),
		P99: us(h.quantile(0.99)), P999: us(h.quantile(0.999)), Conns: conns, Seconds: el.Seconds(), Hist: h.dump()})
}

// procCommand runs this executable with args, prefixed by pin.
func procCommand(ctx context.Context, pin []string, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	all := append(append([]string{}, pin...), exe)
	all = append(all, args...)
	return exec.CommandContext(ctx, all[0], all[1:]...), nil
}

// startServer starts `tapsbench serveFlag 127.0.0.1:0` (prefixed by pin)
// and returns its address and the function that stops it (SIGINT, then
// SIGKILL after 10 s).
func startServer(ctx context.Context, serveFlag string, pin []string) (string, func(), error) {
	srv, err := procCommand(ctx, pin, serveFlag, "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var srvErr bytes.Buffer
	srv.Stderr = &srvErr
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := srv.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = srv.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		if !ok || !strings.HasPrefix(l, "listening on ") {
			stop()
			return "", nil, fmt.Errorf("server %s did not start: %q %s", serveFlag, l, srvErr.String())
		}
		return strings.TrimPrefix(l, "listening on "), stop, nil
	case <-time.After(10 * time.Second):
		stop()
		return "", nil, fmt.Errorf("server %s printed no address in 10 s", serveFlag)
	}
}

// clientProc drives addr with `tapsbench -client` (prefixed by pin) for d.
func clientProc(ctx context.Context, addr string, conns int, d time.Duration, pin []string) (clientResult, error) {
	var cr clientResult
	cl, err := procCommand(ctx, pin, "-client", addr, "-conns", fmt.Sprint(conns), "-duration", d.String())
	if err != nil {
		return cr, err
	}
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

// crossRows runs the raw and the gotaps echo server each in its own
// process (both kept running) and, in p.rounds alternating rounds, drives
// each with a raw client process for d/rounds.
func crossRows(ctx context.Context, w string, conns int, p params, pin []string, target string) (out []Result) {
	k := p.roundsOf()
	d := p.w14Dur / time.Duration(k)
	var imps []*rateRounder
	for _, s := range []struct{ impl, flag string }{{implRaw, "-serve-raw"}, {implTaps, "-serve"}} {
		addr, stop, err := startServer(ctx, s.flag, pin)
		if err != nil {
			imps = append(imps, &rateRounder{rounder: rounder{name: s.impl, err: err}})
			continue
		}
		defer stop()
		imps = append(imps, newRateRounder(s.impl, func(int) (*hist, time.Duration, error) {
			cr, err := clientProc(ctx, addr, conns, d, pin)
			if err != nil {
				return nil, 0, err
			}
			h, err := histFrom(cr.Hist)
			if err != nil || cr.Seconds <= 0 {
				return nil, 0, fmt.Errorf("client result: %v (measured %v s)", err, cr.Seconds)
			}
			return h, time.Duration(cr.Seconds * float64(time.Second)), nil
		}))
	}
	alternate(ctx, k, &imps[0].rounder, &imps[1].rounder)
	for _, rr := range imps {
		if rr.err != nil {
			out = append(out, errRow(w, rr.name, rr.err))
			continue
		}
		out = append(out, latencyRows(w, rr.name, "rtt", &rr.h)...)
		out = append(out, res(w, rr.name, "throughput", rr.rate(), "rt/s"))
	}
	out = append(out, spreadRows(w, "throughput", &imps[1].rounder, &imps[0].rounder)...)
	judgeRatio(out, implTaps, implRaw, "throughput", target)
	judgeRatio(out, implTaps, implRaw, "rtt_p50", "")
	return out
}

func runW14(ctx context.Context, p params) []Result {
	return crossRows(ctx, "W14", 50, p, nil, ">= 0.9")
}

func runW15(ctx context.Context, p params) []Result {
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return []Result{errRow("W15", "all", errors.New("skipped: taskset not found"))}
	}
	return crossRows(ctx, "W15", 1, p, []string{ts, "-c", "1"}, ">= 1.0")
}
