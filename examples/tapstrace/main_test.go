package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/taps"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var record = flag.Bool("record", false, "rewrite testdata/race.jsonl and testdata/race.svg from a fresh race")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordRace races two remote endpoints over loopback (the first a closed
// port, so refused; the second a live listener), exchanges one message
// each way, closes, and returns the trace.
func recordRace(t *testing.T) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var trace syncBuffer
	sys := taps.NewSystem(taps.WithTraceWriter(&trace))

	ln, err := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0))).Listen(ctx)
	require.NoError(t, err)
	live, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)

	// a port nobody listens on: bind one, note it, close it
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := probe.Addr().(*net.TCPAddr).Port
	require.NoError(t, probe.Close())

	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			served <- err
			return
		}
		m, err := c.Receive(ctx)
		if err == nil {
			err = c.Send(ctx, append([]byte("echo: "), m.Data...), nil)
		}
		if err == nil {
			// wait for the client's close, then close too
			_, rerr := c.Receive(ctx)
			if !errors.Is(rerr, taps.ErrClosed) {
				err = rerr
			}
			_ = c.Close()
			<-c.Done()
		}
		served <- err
	}()

	pre := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithRemoteEndpoint(
			taps.NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(uint16(closed)),
			taps.NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(live.Port())))
	c, err := pre.Initiate(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Send(ctx, []byte("hello"), nil))
	m, err := c.Receive(ctx, taps.MinIncompleteLength(len("echo: hello")))
	require.NoError(t, err)
	require.Equal(t, "echo: hello", string(m.Data))
	require.NoError(t, c.Close())
	<-c.Done()
	require.NoError(t, <-served)
	ln.Stop()
	<-ln.Done()
	require.NoError(t, sys.Shutdown(ctx))
	return trace.Bytes()
}

// checkSVG walks the document with encoding/xml and counts the lanes.
func checkSVG(t *testing.T, svg []byte) (candidates, connections int) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
		}
		for _, a := range se.Attr {
			if a.Name.Local == "class" {
				switch a.Value {
				case "lane candidate":
					candidates++
				case "lane connection":
					connections++
				}
			}
		}
	}
	require.Equal(t, "svg", root)
	return candidates, connections
}

func TestRenderRecordedTrace(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "race.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	recs, err := ReadTrace(f, nil)
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	svg := Render(recs)
	cands, conns := checkSVG(t, svg)
	require.Equal(t, 2, cands, "one lane per candidate")
	require.Equal(t, 2, conns, "the initiated and the received connection")
	s := string(svg)
	require.Contains(t, s, "won")
	require.Contains(t, s, "lost: ")
	require.Contains(t, s, "Established")
	require.Contains(t, s, "Closed")
}

func TestRenderFreshRace(t *testing.T) {
	trace := recordRace(t)
	recs, err := ReadTrace(bytes.NewReader(trace), nil)
	require.NoError(t, err)
	var started, failed, won int
	for _, r := range recs {
		if r.GetKind() == "candidate" {
			switch r.GetEvent() {
			case "AttemptStarted":
				started++
			case "AttemptFailed":
				failed++
			case "AttemptWon":
				won++
			}
		}
	}
	require.Equal(t, []int{2, 1, 1}, []int{started, failed, won}, "a refused first candidate, a winning second")
	svg := Render(recs)
	cands, conns := checkSVG(t, svg)
	require.Equal(t, 2, cands)
	require.Equal(t, 2, conns)
	if *record {
		require.NoError(t, os.WriteFile(filepath.Join("testdata", "race.jsonl"), trace, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join("testdata", "race.svg"), svg, 0o644))
	}
}

func TestReadTraceSkipsGarbage(t *testing.T) {
	in := `{"time_unix_nano":"5","kind":"state","connection_id":"1","from_state":"Establishing","to_state":"Established","event":"Ready"}

not json
{"time_unix_nano":"9","kind":"state","connection_id":"1","from_state":"Established","to_state":"Closed","future_field":1}
`
	var warn strings.Builder
	recs, err := ReadTrace(strings.NewReader(in), &warn)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Contains(t, warn.String(), "line 3")
	require.Equal(t, "Established", recs[0].GetToState())
	_, conns := checkSVG(t, Render(recs))
	require.Equal(t, 1, conns)
	// an empty trace still renders a document
	cands, conns := checkSVG(t, Render([]*messages.TraceRecord{}))
	require.Zero(t, cands+conns)
}

func TestTickStep(t *testing.T) {
	require.Equal(t, int64(100_000), tickStep(1_000_000))
	require.Equal(t, int64(500_000), tickStep(4_000_000))
	require.Equal(t, int64(1), tickStep(0))
}

// TestRenderHeldAttempt: an AttemptHeld record (opportunistic security: a
// plain attempt waits for the secure one) draws no lane of its own; a held
// candidate that never started has none.
func TestRenderHeldAttempt(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "race.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	recs, err := ReadTrace(f, nil)
	require.NoError(t, err)
	var first *messages.TraceRecord
	for _, r := range recs {
		if r.GetKind() == "candidate" {
			first = r
			break
		}
	}
	require.NotNil(t, first)
	held := &messages.TraceRecord{TimeUnixNano: first.GetTimeUnixNano() + 1, Kind: "candidate", Event: "AttemptHeld",
		ConnectionId: first.GetConnectionId(), Candidate: "7", Stack: "tcp", Remote: first.GetRemote(), OffsetNs: 1}
	cands, _ := checkSVG(t, Render(append(recs, held)))
	require.Equal(t, 2, cands, "the held candidate that never started has no lane")
}

// stdinUnread is a stdin that fails the test when read.
type stdinUnread struct{ t *testing.T }

func (s stdinUnread) Read([]byte) (int, error) {
	s.t.Error("stdin read")
	return 0, io.EOF
}

// TestArgumentsPrintUsage: tapstrace takes no arguments; -h prints the
// usage (status 0) and anything else too (status 2), without reading
// stdin (-h used to wait on a terminal's stdin, then say "no trace
// records on stdin"). Without arguments it renders stdin.
func TestArgumentsPrintUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{{[]string{"-h"}, 0}, {[]string{"--help"}, 0}, {[]string{"trace.jsonl"}, 2}, {[]string{"-h", "x"}, 2}} {
		var out, errw bytes.Buffer
		require.Equal(t, tc.code, run(tc.args, stdinUnread{t}, &out, &errw), "%v", tc.args)
		require.Empty(t, out.String(), "%v", tc.args)
		require.Equal(t, usage, errw.String(), "%v", tc.args)
	}
	f, err := os.Open(filepath.Join("testdata", "race.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	var out, errw bytes.Buffer
	require.Equal(t, 0, run(nil, f, &out, &errw), "stderr: %s", errw.String())
	checkSVG(t, out.Bytes())
}
