package taps

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
)

// traceLog collects trace records.
type traceLog struct {
	mu   sync.Mutex
	recs []*TraceRecord
}

func (l *traceLog) add(r *TraceRecord) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

func (l *traceLog) snapshot() []*TraceRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*TraceRecord(nil), l.recs...)
}

func (l *traceLog) of(connID uint64) []*TraceRecord {
	var out []*TraceRecord
	for _, r := range l.snapshot() {
		if r.ConnectionID == connID {
			out = append(out, r)
		}
	}
	return out
}

func fmtRec(r *TraceRecord) string {
	return fmt.Sprintf("%d %s c=%d g=%d %s->%s ev=%s msg=%d b=%d err=%q cand=%q st=%q l=%q r=%q off=%d",
		r.TimeUnixNano, r.Kind, r.ConnectionID, r.GroupID, r.FromState, r.ToState, r.Event, r.MessageID, r.Bytes, r.Error, r.Candidate, r.Stack, r.Local, r.Remote, r.OffsetNanos)
}

// stateSteps returns the "state" records of connection id, as "From->To Event".
func stateSteps(recs []*TraceRecord) []string {
	var out []string
	for _, r := range recs {
		if r.Kind == "state" {
			out = append(out, r.FromState+"->"+r.ToState+" "+r.Event)
		}
	}
	return out
}

// refusedRemote is a loopback TCP endpoint nobody listens on.
func refusedRemote(t *testing.T) *RemoteEndpoint {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ap := netip.MustParseAddrPort(l.Addr().String())
	require.NoError(t, l.Close())
	return loopbackRemote(ap)
}

// TestTraceHuntSendErrorOnEstablishmentFailure: a message sent while
// establishing fails with the establishment (SendError): the trace has a
// send_error record for it, before the state record to Closed.
func TestTraceHuntSendErrorOnEstablishmentFailure(t *testing.T) {
	var tl traceLog
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys) // never answers the framer's handshake
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithEstablishmentTimeout(2*time.Second),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	pre.AddFramer(&helloFramer{inner: framers.NewLengthPrefix()})
	c, err := pre.InitiateAsync(testCtx(t))
	require.NoError(t, err)
	errs := make(chan error, 1)
	c.SendAsync([]byte("hello"), nil, func(_ *Connection, err error) { errs <- err })
	select {
	case err := <-errs:
		require.ErrorIs(t, err, ErrEstablishmentTimeout, "the send fails with the establishment")
	case <-time.After(20 * time.Second):
		t.Fatal("no SendError")
	}
	<-c.Done()
	recs := tl.of(c.ID())
	require.Equal(t, []string{"Establishing->Closed EstablishmentError"}, stateSteps(recs))
	sendErrs := 0
	for _, r := range recs {
		switch r.Kind {
		case "send_error":
			sendErrs++
			require.NotEmpty(t, r.Error)
			require.NotZero(t, r.MessageID)
		case "state":
			require.Equal(t, 1, sendErrs, "one send_error record, before the state record:\n%s", dumpRecs(recs))
		}
	}
	require.Equal(t, 1, sendErrs, "one send_error record for the failed message:\n%s", dumpRecs(recs))
	ln.Stop()
	<-ln.Done()
}

func dumpRecs(recs []*TraceRecord) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(fmtRec(r))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestTraceHuntTracerPanicContained: a tracer that panics neither crashes
// the process nor breaks the connections.
func TestTraceHuntTracerPanicContained(t *testing.T) {
	var n atomic.Int64
	sys := newTestSystem(t, WithLogger(slog.New(slog.DiscardHandler)), WithTracer(func(*TraceRecord) {
		n.Add(1)
		panic("tracer panic")
	}))
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c, s := dialAccept(t, sys, ln, framers.NewLengthPrefix())
	require.NoError(t, c.Send(testCtx(t), []byte("hello"), nil))
	m, err := s.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	require.NoError(t, c.Close())
	require.NoError(t, s.Close())
	<-c.Done()
	<-s.Done()
	require.NoError(t, c.Err())
	ln.Stop()
	<-ln.Done()
	require.Positive(t, n.Load())
}

// TestTraceHuntReestablishGivesUp: a long-lived connection whose peer has
// gone for good ends with ConnectionError; its last state record names
// that event, not EstablishmentError.
func TestTraceHuntReestablishGivesUp(t *testing.T) {
	var tl traceLog
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))),
		WithReestablishment(ReestablishPolicy{Initial: 5 * time.Millisecond, Max: 10 * time.Millisecond, MaxAttempts: 2}))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	var seen []string
	var mu sync.Mutex
	c.OnConnectionError(func(*Connection, error) { mu.Lock(); seen = append(seen, "ConnectionError"); mu.Unlock() })
	c.OnEstablishmentError(func(*Connection, error) { mu.Lock(); seen = append(seen, "EstablishmentError"); mu.Unlock() })
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	ln.Stop()
	<-ln.Done()
	s.Abort()
	<-s.Done()
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the connection did not give up")
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 1 }, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	require.Equal(t, []string{"ConnectionError"}, seen)
	mu.Unlock()
	steps := stateSteps(tl.of(c.ID()))
	require.NotEmpty(t, steps)
	require.Equal(t, "Establishing->Closed ConnectionError", steps[len(steps)-1], "%v", steps)
	require.Equal(t, "Establishing->Established Ready", steps[0], "%v", steps)
	require.Contains(t, steps, "Established->Establishing ", "%v", dumpRecs(tl.of(c.ID())))
}

// TestTraceHuntSendErrorInFlightAtAbort: messages still queued when the
// connection is aborted fail with SendError; each is a send_error record
// of the connection, before its state record to Closed.
func TestTraceHuntSendErrorInFlightAtAbort(t *testing.T) {
	var tl traceLog
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithSendBuffer(64<<20),
		WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t)) // never reads: the sends back up
	require.NoError(t, err)
	const n = 64
	results := make(chan error, n)
	msg := make([]byte, 512<<10)
	for range n {
		c.SendAsync(msg, nil, func(_ *Connection, err error) { results <- err })
	}
	// the first sends fill the socket buffers; then the rest wait
	require.Eventually(t, func() bool {
		sent := 0
		for _, r := range tl.of(c.ID()) {
			if r.Kind == "sent" {
				sent++
			}
		}
		return sent > 0
	}, 10*time.Second, 5*time.Millisecond)
	c.Abort()
	<-c.Done()
	failed := 0
	for range n {
		select {
		case err := <-results:
			if err != nil {
				require.NotErrorIs(t, err, actors.ErrSendQueueFull)
				failed++
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a SendAsync handler did not run")
		}
	}
	require.Positive(t, failed, "some sends were still queued at the abort")
	recs := tl.of(c.ID())
	sendErrs, closedAt := 0, -1
	for i, r := range recs {
		switch {
		case r.Kind == "send_error":
			require.Equal(t, -1, closedAt, "send_error after the state record to Closed:\n%s", dumpRecs(recs))
			require.NotZero(t, r.MessageID)
			require.NotEmpty(t, r.Error)
			sendErrs++
		case r.Kind == "state" && r.ToState == "Closed":
			closedAt = i
		}
	}
	require.Equal(t, failed, sendErrs, "one send_error record per SendError:\n%s", dumpRecs(recs))
	s.Abort()
	<-s.Done()
	ln.Stop()
	<-ln.Done()
}

// TestTraceHuntFramerFailureNamesItsConnection: a framer failing on
// received data is a receive_error record of its connection.
func TestTraceHuntFramerFailureNamesItsConnection(t *testing.T) {
	var tl traceLog
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys, framers.NewLengthPrefix(framers.WithMaxMessageSize(4)))
	raw, err := net.Dial("tcp", listenerAddr(t, ln).String())
	require.NoError(t, err)
	defer raw.Close()
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	_, err = raw.Write([]byte{0, 0, 0, 5, 'a'}) // above the maximum
	require.NoError(t, err)
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the framer failure did not end the connection")
	}
	var found bool
	for _, r := range tl.snapshot() {
		if r.Kind == "receive_error" {
			found = true
			require.Equal(t, s.ID(), r.ConnectionID, "%s", fmtRec(r))
			require.NotEmpty(t, r.Error)
		}
	}
	require.True(t, found, "a receive_error record:\n%s", dumpRecs(tl.snapshot()))
	ln.Stop()
	<-ln.Done()
}

// TestTraceHuntRacingRecords: a refused candidate and one that wins: the
// first is AttemptFailed with its error, the second AttemptWon, each with
// its candidate index, stack and remote; each started before it ended.
func TestTraceHuntRacingRecords(t *testing.T) {
	var tl traceLog
	sys := newTestSystem(t, WithTracer(tl.add))
	ln := listenLoopback(t, sys)
	bad, good := refusedRemote(t), loopbackRemote(listenerAddr(t, ln))
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), WithRemoteEndpoint(bad, good), WithAttemptDelay(5*time.Second))
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	s, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	var got []string
	for _, r := range tl.of(c.ID()) {
		if r.Kind != "candidate" {
			continue
		}
		require.Equal(t, "tcp", r.Stack)
		require.NotEmpty(t, r.Candidate)
		line := r.Event + " " + r.Candidate + " " + r.Remote
		if r.Event == "AttemptFailed" {
			require.Contains(t, r.Error, "refused")
		} else {
			require.Empty(t, r.Error)
		}
		got = append(got, line)
	}
	require.Equal(t, []string{
		"AttemptStarted 0 " + bad.String(),
		"AttemptFailed 0 " + bad.String(),
		"AttemptStarted 1 " + good.String(),
		"AttemptWon 1 " + good.String(),
	}, got)
	c.Abort()
	s.Abort()
	<-c.Done()
	<-s.Done()
	ln.Stop()
	<-ln.Done()
}

// TestTraceHuntTraceWriterConcurrent: WithTraceWriter under many
// concurrent connections writes whole lines, each one valid JSON and one
// TraceRecord, and the records of each connection have non-decreasing
// times.
func TestTraceHuntTraceWriterConcurrent(t *testing.T) {
	var buf lockedBuffer
	sys := newTestSystem(t, WithTraceWriter(&buf))
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, s := dialAccept(t, sys, ln, framers.NewLengthPrefix())
			for range 5 {
				if c.Send(testCtx(t), []byte("ping"), nil) != nil {
					return
				}
				if _, err := s.Receive(testCtx(t)); err != nil {
					return
				}
			}
			_ = c.Close()
			_ = s.Close()
			<-c.Done()
			<-s.Done()
		}()
	}
	wg.Wait()
	ln.Stop()
	<-ln.Done()
	last := map[uint64]int64{}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Greater(t, len(lines), n*10)
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), "line %q", l)
		rec := &messages.TraceRecord{}
		require.NoError(t, protojson.Unmarshal([]byte(l), rec))
		if id := rec.GetConnectionId(); id != 0 {
			require.GreaterOrEqual(t, rec.GetTimeUnixNano(), last[id], "connection %d goes back in time: %s", id, l)
			last[id] = rec.GetTimeUnixNano()
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTraceHuntKindsDocumented: the kinds TraceRecord's doc (and the
// proto's) lists are exactly those the actors emit.
func TestTraceHuntKindsDocumented(t *testing.T) {
	emitted := map[string]bool{}
	files, err := filepath.Glob("../actors/*.go")
	require.NoError(t, err)
	kindRe := regexp.MustCompile(`TraceRecord\{Kind: "([a-z_]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range kindRe.FindAllStringSubmatch(string(b), -1) {
			emitted[m[1]] = true
		}
	}
	require.Contains(t, emitted, "state")
	quoted := regexp.MustCompile(`"([a-z_]+)"`)
	docKinds := func(file, start, end string) map[string]bool {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		s := string(b)
		i := strings.Index(s, start)
		require.GreaterOrEqual(t, i, 0, "%s: %q", file, start)
		j := strings.Index(s[i:], end)
		require.GreaterOrEqual(t, j, 0, "%s: %q", file, end)
		out := map[string]bool{}
		for _, m := range quoted.FindAllStringSubmatch(s[i:i+j], -1) {
			out[m[1]] = true
		}
		return out
	}
	require.Equal(t, emitted, docKinds("system.go", "type TraceRecord struct {", "Kind         string"), "taps.TraceRecord's doc")
	require.Equal(t, emitted, docKinds("../messages/taps.proto", "// Kind:", "string kind = 2;"), "messages.TraceRecord's doc")
}
