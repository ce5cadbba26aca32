package actors

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/gotaps/gotaps/supervision"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// callsTracing reports whether e calls a method or function named Tracing
// (System.Tracing, or tracedSendsLocked's equivalent).
func callsTracing(e ast.Node) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "Tracing" {
				found = true
			}
		}
		return !found
	})
	return found
}

// negatesTracing reports whether cond is true whenever tracing is off:
// !x.Tracing(), alone or in a || of conditions.
func negatesTracing(cond ast.Expr) bool {
	switch e := cond.(type) {
	case *ast.ParenExpr:
		return negatesTracing(e.X)
	case *ast.UnaryExpr:
		return e.Op == token.NOT && callsTracing(e.X)
	case *ast.BinaryExpr:
		return e.Op == token.LOR && (negatesTracing(e.X) || negatesTracing(e.Y))
	}
	return false
}

// isTraceRecordLit reports whether n is a messages.TraceRecord composite
// literal.
func isTraceRecordLit(n ast.Node) bool {
	cl, ok := n.(*ast.CompositeLit)
	if !ok {
		return false
	}
	s, ok := cl.Type.(*ast.SelectorExpr)
	if !ok || s.Sel.Name != "TraceRecord" {
		return false
	}
	x, ok := s.X.(*ast.Ident)
	return ok && x.Name == "messages"
}

// tracingGuarded reports whether the node at the end of path (its
// ancestors, outermost first) runs only when tracing is on: it is in the
// body of an if whose condition calls Tracing, or after an if of the same
// block whose condition holds when tracing is off and whose body returns
// (the early return of "if !sys.Tracing() { return }").
func tracingGuarded(path []ast.Node) bool {
	n := path[len(path)-1]
	for i := len(path) - 2; i >= 0; i-- {
		switch p := path[i].(type) {
		case *ast.IfStmt:
			if callsTracing(p.Cond) && p.Body.Pos() <= n.Pos() && n.End() <= p.Body.End() {
				return true
			}
		case *ast.BlockStmt:
			for _, st := range p.List {
				if st.End() > n.Pos() {
					break
				}
				is, ok := st.(*ast.IfStmt)
				if !ok || !negatesTracing(is.Cond) || len(is.Body.List) == 0 {
					continue
				}
				if _, ret := is.Body.List[len(is.Body.List)-1].(*ast.ReturnStmt); ret {
					return true
				}
			}
		case *ast.FuncDecl:
			return false // a function's guard is its own
		}
	}
	return false
}

// TestTraceGapRecordsBuiltOnlyWhenTracing: every trace record the actors
// build (a messages.TraceRecord literal, and the formatting of its
// fields, err.Error() among them) and every System.trace call is behind a
// cheap tracing check, so that a System without a tracer builds none.
// Static: it covers every site, those that are hard to reach in a test
// (group refusals, migrations) included.
func TestTraceGapRecordsBuiltOnlyWhenTracing(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	sites, unguarded := 0, []string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		file, err := parser.ParseFile(fset, f, src, 0)
		require.NoError(t, err)
		var path []ast.Node
		ast.Inspect(file, func(n ast.Node) bool {
			if n == nil {
				path = path[:len(path)-1]
				return true
			}
			path = append(path, n)
			site := isTraceRecordLit(n)
			if c, ok := n.(*ast.CallExpr); ok {
				if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "trace" {
					site = true
				}
			}
			if site {
				if fd, ok := path[1].(*ast.FuncDecl); ok && fd.Name.Name == "trace" && fd.Recv != nil {
					return true // System.trace itself
				}
				sites++
				if !tracingGuarded(path) {
					unguarded = append(unguarded, fset.Position(n.Pos()).String())
				}
			}
			return true
		})
	}
	require.Greater(t, sites, 50, "the scan finds the trace sites")
	require.Empty(t, unguarded, "trace records built without a tracing check")
}

// TestTraceGapNoRecordsWithoutTracer: a System without a tracer builds no
// trace record on the error paths (a handler panic, a send that fails, a
// message Expired, a listener that stops): System.trace is never reached
// with nobody to give the record to.
func TestTraceGapNoRecordsWithoutTracer(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	require.False(t, sys.Tracing())
	var seen int64
	built := func(what string) { // records built since the last step
		t.Helper()
		n := sys.untraced.Load()
		assert.Zero(t, n-seen, "%s built trace records with no tracer", what)
		seen = n
	}

	// a handler panic: a "panic" record
	sys.ReportPanic(&supervision.PanicError{Where: "Ready handler", Value: "boom"})
	built("ReportPanic")

	// a listener stopped: a "listener" Stopped record
	st := startListener(t, sys, newFakeListener(0, nil))
	_, err := Ask(context.Background(), sys, st.PID, &messages.StopListener{})
	require.NoError(t, err)
	<-st.Queue.Done()
	built("the listener's stop")

	// a connection: a send after the Final one fails (sendFailed), one
	// past its lifetime is Expired
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	fs := newFakeStack(map[netip.AddrPort]outcome{addr: {kind: "ok"}})
	cfg := &messages.ConnectionConfig{Remotes: endpoints(addr), Stacks: []stacks.Stack{fs},
		Framers: []framers.Framer{framers.NewLengthPrefix()}}
	link := NewLink(sys.NewID(), 0, 0, false)
	var res any
	res, err = Ask(context.Background(), sys, sys.Root, &InitiateConnection{Config: cfg, Link: link})
	require.NoError(t, err)
	conn := res.(*ConnectionStarted).Conn
	<-link.Ready()
	require.NoError(t, link.EstablishmentErr())
	send := func(props *messages.MessageProps, queued time.Time) chan error {
		id := sys.NewID()
		ch := make(chan error, 1)
		require.True(t, link.ExpectSend(id, func(err error) { ch <- err }))
		sys.AS.Root.Send(conn, &messages.SendMessage{SendID: id, MessageID: id, Data: []byte("x"),
			EndOfMessage: true, Queued: queued, Props: props})
		return ch
	}
	expired := send(&messages.MessageProps{Lifetime: time.Millisecond, Priority: 100, Reliable: true, ChecksumLen: -1},
		time.Now().Add(-time.Second))
	require.ErrorIs(t, <-expired, ErrExpired)
	built("an Expired message")
	send(&messages.MessageProps{Final: true, Priority: 100, Reliable: true, ChecksumLen: -1}, time.Now())
	late := send(&messages.MessageProps{Priority: 100, Reliable: true, ChecksumLen: -1}, time.Now())
	require.ErrorIs(t, <-late, ErrFinalSent)
	built("a failed send")

	sys.AS.Root.Send(conn, &messages.AbortConnection{})
	<-link.Done()
}
