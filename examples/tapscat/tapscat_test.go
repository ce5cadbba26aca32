package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// syncBuffer is an io.Writer safe for concurrent use that also hands every
// complete line to lines (dropping lines when nobody keeps up).
type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	part  []byte
	lines chan string
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{lines: make(chan string, 256)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.part = append(b.part, p...)
	for {
		i := bytes.IndexByte(b.part, '\n')
		if i < 0 {
			break
		}
		select {
		case b.lines <- string(b.part[:i]):
		default:
		}
		b.part = b.part[i+1:]
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// result is what one run of tapscat produced.
type result struct {
	code           int
	stdout, stderr string
}

// runTapscat runs tapscat in-process to completion.
func runTapscat(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	out, errw := newSyncBuffer(), newSyncBuffer()
	code := run(context.Background(), args, stdin, out, errw)
	return result{code, out.String(), errw.String()}
}

// rawListener is a plain Go TCP listener on loopback: the peer tapscat
// talks to. serve runs once, on the first accepted connection, in its own
// goroutine; its error is checked when the test ends.
func rawListener(t *testing.T, serve func(c net.Conn) error) (port string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- serve(c)
	}()
	t.Cleanup(func() {
		ln.Close()
		require.NoError(t, <-done, "raw peer")
	})
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close())
	return port
}

func lengthPrefixed(msgs ...string) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

// drain reads c until the end of stream and fails on anything but a clean
// EOF: tapscat closes gracefully.
func drain(c net.Conn) error {
	_, err := io.Copy(io.Discard, c)
	return err
}

// TestClientLengthFramerSeveralMessagesInOneWrite: the peer writes three
// length-prefixed messages in a single Write; tapscat prints each as a line
// and closes after --count of them.
func TestClientLengthFramerSeveralMessagesInOneWrite(t *testing.T) {
	port := rawListener(t, func(c net.Conn) error {
		if _, err := c.Write(lengthPrefixed("one", "two", "three")); err != nil {
			return err
		}
		return drain(c)
	})
	r := runTapscat(t, strings.NewReader(""), "--framer", "length", "--count", "3", "--timeout", "10s", "127.0.0.1", port)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.Equal(t, "one\ntwo\nthree\n", r.stdout)
	require.Empty(t, r.stderr)
}

// TestListenEchoLines: tapscat -l --echo --framer line serves two raw
// clients at the same time, echoing every line on its own connection, and
// ends gracefully after --count lines.
func TestListenEchoLines(t *testing.T) {
	out, errw := newSyncBuffer(), newSyncBuffer()
	code := make(chan int, 1)
	go func() {
		code <- run(context.Background(), []string{"-l", "--echo", "--framer", "line", "-v", "--count", "4", "--timeout", "10s",
			"127.0.0.1", "0"}, strings.NewReader(""), out, errw)
	}()
	var addr string
	for addr == "" {
		select {
		case line := <-errw.lines:
			if a, ok := strings.CutPrefix(line, "tapscat: listening on "); ok {
				addr = a
			}
		case c := <-code:
			t.Fatalf("tapscat ended with %d: %s", c, errw.String())
		}
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		return c, bufio.NewReader(c)
	}
	exchange := func(c net.Conn, r *bufio.Reader, line string) {
		_, err := io.WriteString(c, line+"\n")
		require.NoError(t, err)
		got, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, line+"\n", got)
	}
	c1, r1 := dial()
	defer c1.Close()
	exchange(c1, r1, "1a")
	c2, r2 := dial() // served while c1 is still open
	defer c2.Close()
	exchange(c2, r2, "2a")
	exchange(c1, r1, "1b")
	exchange(c2, r2, "2b")

	// after the 4th message tapscat closes both connections gracefully
	for _, r := range []*bufio.Reader{r1, r2} {
		rest, err := io.ReadAll(r)
		require.NoError(t, err)
		require.Empty(t, rest)
	}
	c1.Close()
	c2.Close()
	require.Equal(t, exitOK, <-code, "stderr: %s", errw.String())
	require.ElementsMatch(t, []string{"1a", "2a", "1b", "2b"}, strings.Fields(out.String()))
}

// TestByteStreamBothWaysAndEOF: without a framer bytes are copied both
// ways unchanged, and the end of stdin reaches the peer as end of stream.
func TestByteStreamBothWaysAndEOF(t *testing.T) {
	toPeer := bytes.Repeat([]byte("stdin to peer\x00\xff"), 5000) // 75 kB
	fromPeer := bytes.Repeat([]byte("peer to stdout\r\n"), 5000)  // 80 kB
	gotByPeer := make(chan []byte, 1)
	port := rawListener(t, func(c net.Conn) error {
		if _, err := c.Write(fromPeer); err != nil {
			return err
		}
		b, err := io.ReadAll(c) // returns at tapscat's end of stream
		gotByPeer <- b
		return err
	})
	r := runTapscat(t, bytes.NewReader(toPeer), "--timeout", "10s", "127.0.0.1", port)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.True(t, bytes.Equal(fromPeer, []byte(r.stdout)), "stdout: %d bytes, want the peer's %d", len(r.stdout), len(fromPeer))
	got := <-gotByPeer
	require.True(t, bytes.Equal(toPeer, got), "peer got %d bytes, want stdin's %d", len(got), len(toPeer))
}

// TestTraceJSONLines: --trace writes one valid JSON object per line on
// stderr, among them the state change to Established.
func TestTraceJSONLines(t *testing.T) {
	port := rawListener(t, func(c net.Conn) error {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			return err
		}
		if _, err := c.Write(lengthPrefixed(string(body))); err != nil {
			return err
		}
		return drain(c)
	})
	r := runTapscat(t, strings.NewReader("ping\n"), "--trace", "--framer", "length", "--count", "1", "--timeout", "10s",
		"127.0.0.1", port)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.Equal(t, "ping\n", r.stdout)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	require.NotEmpty(t, lines)
	established, kinds := false, map[string]bool{}
	for _, l := range lines {
		require.True(t, json.Valid([]byte(l)), "not JSON: %q", l)
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec))
		kind, _ := rec["kind"].(string)
		kinds[kind] = true
		if kind == "state" && rec["to_state"] == "Established" {
			established = true
		}
	}
	require.True(t, established, "no state record to Established in %s", r.stderr)
	require.True(t, kinds["sent"] && kinds["received"], "message events: %v", kinds)
}

// TestEstablishmentFailure: a closed loopback port gives exit status 1 and
// a one-line error.
func TestEstablishmentFailure(t *testing.T) {
	r := runTapscat(t, strings.NewReader("never sent\n"), "--framer", "line", "--timeout", "10s", "127.0.0.1", closedPort(t))
	require.Equal(t, exitFailure, r.code)
	require.Empty(t, r.stdout)
	require.True(t, strings.HasPrefix(r.stderr, "tapscat: establishment failed"), "%q", r.stderr)
	require.Contains(t, r.stderr, "refused")
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
}

// TestUnknownRequireProperty: an unknown property name is a usage error
// that names the property.
func TestUnknownRequireProperty(t *testing.T) {
	r := runTapscat(t, strings.NewReader(""), "--require", "reliabilty", "127.0.0.1", "9")
	require.Equal(t, exitUsage, r.code)
	require.Equal(t, "tapscat: --require reliabilty: parse property reliabilty: unknown property\n", r.stderr)
}

// readLine reads one line from c byte by byte (no read-ahead), so the
// peer knows tapscat's connection is established before it closes.
func readLine(c net.Conn) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

// TestRemoteCloseEndsClient: the peer's close ends tapscat with status 0
// even though stdin is still open.
func TestRemoteCloseEndsClient(t *testing.T) {
	port := rawListener(t, func(c net.Conn) error {
		if _, err := readLine(c); err != nil {
			return err
		}
		_, err := io.WriteString(c, "bye\n")
		return err // the deferred Close is the remote close
	})
	pr, pw := io.Pipe()
	defer pw.Close() // ends tapscat's stdin reader, which may outlive run
	stdin := io.MultiReader(strings.NewReader("hi\n"), pr)
	r := runTapscat(t, stdin, "--framer", "line", "--timeout", "10s", "127.0.0.1", port)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.Equal(t, "bye\n", r.stdout)
	require.Empty(t, r.stderr)
}

// TestRemoteHalfCloseEndsClient: a peer that only ends its sending side
// (shutdown) after its reply still gets tapscat's end of stream: tapscat
// closes its side too, as netcat does, and exits with status 0 though
// stdin is still open.
func TestRemoteHalfCloseEndsClient(t *testing.T) {
	port := rawListener(t, func(c net.Conn) error {
		if _, err := readLine(c); err != nil {
			return err
		}
		if _, err := io.WriteString(c, "bye\n"); err != nil {
			return err
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		rest, err := io.ReadAll(c) // until tapscat's end of stream
		if err == nil && len(rest) > 0 {
			err = fmt.Errorf("unexpected data after the half-close: %q", rest)
		}
		return err
	})
	pr, pw := io.Pipe()
	defer pw.Close() // ends tapscat's stdin reader, which may outlive run
	stdin := io.MultiReader(strings.NewReader("hi\n"), pr)
	r := runTapscat(t, stdin, "--framer", "line", "--timeout", "10s", "127.0.0.1", port)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.Equal(t, "bye\n", r.stdout)
	require.Empty(t, r.stderr)
}

// TestRemoteCloseBeforeCount: a peer that closes before --count messages
// arrived is an error.
func TestRemoteCloseBeforeCount(t *testing.T) {
	port := rawListener(t, func(c net.Conn) error {
		if _, err := readLine(c); err != nil {
			return err
		}
		_, err := io.WriteString(c, "only one\n")
		return err
	})
	r := runTapscat(t, strings.NewReader("hi\n"), "--framer", "line", "--count", "2", "--timeout", "10s", "127.0.0.1", port)
	require.Equal(t, exitFailure, r.code)
	require.Equal(t, "only one\n", r.stdout)
	require.Equal(t, "tapscat: connection closed after 1 of 2 messages\n", r.stderr)
}

// TestTimeout: --timeout ends a connection that never delivers --count
// messages, with status 1.
func TestTimeout(t *testing.T) {
	port := rawListener(t, func(c net.Conn) error {
		_, err := io.Copy(io.Discard, c) // tapscat aborts: a reset or EOF
		var ne *net.OpError
		if errors.As(err, &ne) {
			return nil
		}
		return err
	})
	r := runTapscat(t, strings.NewReader(""), "--framer", "line", "--count", "1", "--timeout", "200ms", "127.0.0.1", port)
	require.Equal(t, exitFailure, r.code)
	require.Equal(t, "tapscat: timeout after 200ms\n", r.stderr)
}

// TestInterrupted: cancelling run's context is an interrupt (status 130).
func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out, errw := newSyncBuffer(), newSyncBuffer()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-l", "-v", "127.0.0.1", "0"}, strings.NewReader(""), out, errw)
	}()
	line := <-errw.lines
	require.True(t, strings.HasPrefix(line, "tapscat: listening on 127.0.0.1:"), line)
	cancel()
	require.Equal(t, exitInterrupted, <-code)
	require.Contains(t, errw.String(), "tapscat: interrupted\n")
}

// TestSecurityUnfulfilled: the TLS flags build SecurityParameters; with no
// secure stack to satisfy them, establishment fails with a one-line error
// naming the cause.
func TestSecurityUnfulfilled(t *testing.T) {
	r := runTapscat(t, strings.NewReader(""), "--tls", "--alpn", "echo", "--server-name", "localhost", "--timeout", "10s",
		"127.0.0.1", closedPort(t))
	require.Equal(t, exitFailure, r.code)
	require.True(t, strings.HasPrefix(r.stderr, "tapscat: establishment failed"), "%q", r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
}
