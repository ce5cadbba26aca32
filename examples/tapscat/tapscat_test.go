package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

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

// startListener runs tapscat -l -v args in the background and returns the
// first address it listens on, as HOST and PORT, and a wait for its end.
func startListener(t *testing.T, args ...string) (host, port string, wait func() result) {
	t.Helper()
	host, port, l := startListenerCtx(t, context.Background(), args...)
	return host, port, l.wait
}

// bgListener is a tapscat -l running in the background.
type bgListener struct {
	code      chan int
	out, errw *syncBuffer
}

func (l *bgListener) wait() result { return result{<-l.code, l.out.String(), l.errw.String()} }

// startListenerCtx is startListener with the ctx tapscat runs under (its
// end is an interrupt).
func startListenerCtx(t *testing.T, ctx context.Context, args ...string) (host, port string, l *bgListener) {
	t.Helper()
	return startListenerIn(t, ctx, strings.NewReader(""), args...)
}

// startListenerIn is startListenerCtx with stdin.
func startListenerIn(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) (host, port string, l *bgListener) {
	t.Helper()
	l = &bgListener{code: make(chan int, 1), out: newSyncBuffer(), errw: newSyncBuffer()}
	go func() {
		l.code <- run(ctx, append([]string{"-l", "-v"}, args...), stdin, l.out, l.errw)
	}()
	var addr string
	for addr == "" {
		select {
		case line := <-l.errw.lines:
			addr, _ = strings.CutPrefix(line, "tapscat: listening on ")
		case c := <-l.code:
			t.Fatalf("tapscat -l ended with %d: %s", c, l.errw.String())
		}
	}
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return host, port, l
}

// TestUDPEchoLines: --protocols udp alone (no --profile) selects UDP on
// both sides; a listening tapscat echoes each line as a datagram.
func TestUDPEchoLines(t *testing.T) {
	host, port, wait := startListener(t, "--protocols", "udp", "--echo", "--framer", "line", "--count", "2", "--timeout", "10s",
		"127.0.0.1", "0")
	r := runTapscat(t, strings.NewReader("one\ntwo\n"), "--protocols", "udp", "--framer", "line", "--count", "2", "--trace",
		"--timeout", "10s", host, port)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.Equal(t, "one\ntwo\n", r.stdout)
	require.Equal(t, "udp", readyStack(t, r.stderr))
	l := wait()
	require.Equal(t, exitOK, l.code, "listener stderr: %s", l.stderr)
	require.Equal(t, "one\ntwo\n", l.stdout)
}

// TestUDPByteModeEmptyDatagramIsAMessage: without a framer over UDP every
// datagram is a message, the empty one too (only a byte stream's empty
// end is not one): a listening tapscat counts it toward --count and
// echoes it back, in order with the others.
func TestUDPByteModeEmptyDatagramIsAMessage(t *testing.T) {
	host, port, wait := startListener(t, "--protocols", "udp", "--echo", "--count", "2", "--timeout", "10s", "127.0.0.1", "0")
	c, err := net.Dial("udp", net.JoinHostPort(host, port))
	require.NoError(t, err)
	defer c.Close()
	for _, d := range []string{"", "x"} {
		_, err = c.Write([]byte(d))
		require.NoError(t, err)
	}
	buf := make([]byte, 2048)
	for _, want := range []string{"", "x"} {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		n, err := c.Read(buf)
		require.NoError(t, err, "the echo of %q", want)
		require.Equal(t, want, string(buf[:n]), "the echoes, in order")
	}
	l := wait()
	require.Equal(t, exitOK, l.code, "the empty datagram counts toward --count 2; stderr: %s", l.stderr)
	require.Equal(t, "x", l.stdout)
}

// writeSelfSigned writes a self-signed certificate for localhost and
// 127.0.0.1 and its key as PEM files in a temporary directory.
func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}

// TestQUICAndTLSWithCertificates: a secure listener (TLS and QUIC on one
// port, reported once by -v) serves a QUIC client that trusts its
// certificate through --ca, and a TLS client over a byte stream;
// --protocols quic alone implies security, so a client without --ca
// rejects the self-signed certificate with one error line and status 1.
func TestQUICAndTLSWithCertificates(t *testing.T) {
	cert, key := writeSelfSigned(t)
	host, port, wait := startListener(t, "--cert", cert, "--key", key, "--echo", "--framer", "length",
		"--count", "2", "--timeout", "20s", "127.0.0.1", "0")

	r := runTapscat(t, strings.NewReader("x\n"), "--protocols", "quic", "--framer", "length", "--timeout", "10s",
		host, port)
	require.Equal(t, exitFailure, r.code)
	require.True(t, strings.HasPrefix(r.stderr, "tapscat: establishment failed"), "%q", r.stderr)
	require.Contains(t, r.stderr, "certificate")
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)

	for _, proto := range []string{"quic", "tls"} {
		r = runTapscat(t, strings.NewReader(proto+"\n"), "--protocols", proto, "--ca", cert, "--server-name", "localhost",
			"--framer", "length", "--count", "1", "--trace", "--timeout", "10s", host, port)
		require.Equal(t, exitOK, r.code, "%s: stderr: %s", proto, r.stderr)
		require.Equal(t, proto+"\n", r.stdout)
		require.Equal(t, proto, readyStack(t, r.stderr))
	}
	l := wait()
	require.Equal(t, exitOK, l.code, "listener stderr: %s", l.stderr)
	require.ElementsMatch(t, []string{"quic", "tls"}, strings.Fields(l.stdout))
	require.Equal(t, 1, strings.Count(l.stderr, "listening on"), "one line per address: %s", l.stderr)
}

// TestOpportunistic: --opportunistic speaks TLS to a listener with a
// certificate (unverified: no --ca) and plain TCP to one without, after
// its TLS attempt failed (the plain listener reads the ClientHello as an
// oversized length-prefixed message: a connection error, status 1).
func TestOpportunistic(t *testing.T) {
	cert, key := writeSelfSigned(t)
	for _, tc := range []struct {
		listener []string
		want     string
	}{
		{[]string{"--cert", cert, "--key", key, "--protocols", "tls"}, "tls"},
		{[]string{"--protocols", "tcp"}, "tcp"},
	} {
		host, port, wait := startListener(t, append(tc.listener, "--echo", "--framer", "length", "--count", "1",
			"--timeout", "20s", "127.0.0.1", "0")...)
		r := runTapscat(t, strings.NewReader("hi\n"), "--opportunistic", "--protocols", "tcp,tls", "--framer", "length",
			"--count", "1", "--trace", "--timeout", "10s", host, port)
		require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
		require.Equal(t, "hi\n", r.stdout)
		require.Equal(t, tc.want, readyStack(t, r.stderr))
		l := wait()
		require.Equal(t, "hi\n", l.stdout, "listener stderr: %s", l.stderr)
		if tc.want == "tls" {
			require.Equal(t, exitOK, l.code, "listener stderr: %s", l.stderr)
		} else {
			require.Contains(t, l.stderr, "exceeds the maximum", "the TLS attempt reached the plain listener first")
		}
	}
}

// readyStack returns the stack of the state record to Established in a
// --trace output (protojson: its spacing varies).
func readyStack(t *testing.T, trace string) string {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(trace), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "%q", l)
		if rec["kind"] == "state" && rec["to_state"] == "Established" {
			s, _ := rec["stack"].(string)
			return s
		}
	}
	t.Fatalf("no state record to Established in %s", trace)
	return ""
}

// TestListenerWithoutCountOutlivesStdin: a listening tapscat without
// --count does not end with stdin (as the README and the package doc say):
// after its stdin has ended and a first connection has come and gone, it
// still serves a second one, and it ends on an interrupt (status 130).
func TestListenerWithoutCountOutlivesStdin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	host, port, l := startListenerCtx(t, ctx, "--echo", "--framer", "line", "--timeout", "20s", "127.0.0.1", "0")
	code, out, errw := l.code, l.out, l.errw
	for _, msg := range []string{"first", "second"} {
		r := runTapscat(t, strings.NewReader(msg+"\n"), "--framer", "line", "--count", "1", "--timeout", "10s", host, port)
		require.Equal(t, exitOK, r.code, "%s: stderr: %s; listener stderr: %s", msg, r.stderr, errw.String())
		require.Equal(t, msg+"\n", r.stdout)
	}
	select {
	case c := <-code:
		t.Fatalf("the listener ended (%d) without --count: %s", c, errw.String())
	default:
	}
	cancel()
	require.Equal(t, exitInterrupted, <-code, "stderr: %s", errw.String())
	require.Equal(t, "first\nsecond\n", out.String())
}

// TestUDPByteModeEndOfStdinCloses: without a framer over UDP, which has no
// end of stream, the end of stdin closes the connection as with a framer:
// the peer gets stdin's datagram and no empty one after it (an empty
// final Message was sent as one), and tapscat exits 0 at once instead of
// waiting for the peer to end a stream it never ends (until --timeout).
func TestUDPByteModeEndOfStdinCloses(t *testing.T) {
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer peer.Close()
	port := strconv.Itoa(peer.LocalAddr().(*net.UDPAddr).Port)

	r := runTapscat(t, strings.NewReader("abc"), "--protocols", "udp", "--timeout", "10s", "127.0.0.1", port)
	require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
	require.Empty(t, r.stderr)

	// a marker sent after tapscat returned is queued behind everything
	// tapscat sent (one socket's receive queue, in order on loopback)
	marker, err := net.Dial("udp", peer.LocalAddr().String())
	require.NoError(t, err)
	defer marker.Close()
	_, err = marker.Write([]byte("marker"))
	require.NoError(t, err)
	var got []string
	buf := make([]byte, 2048)
	for {
		require.NoError(t, peer.SetReadDeadline(time.Now().Add(10*time.Second)))
		n, _, err := peer.ReadFrom(buf)
		require.NoError(t, err)
		if string(buf[:n]) == "marker" {
			break
		}
		got = append(got, string(buf[:n]))
	}
	require.Equal(t, []string{"abc"}, got, "the datagrams tapscat sent")
}

// TestListenerFailureReportedOnce: when a listening tapscat ends on a
// failure of its own (here reading stdin), the connections it aborts on
// the way out are not reported as connection errors too: status 1 with
// the one error line the README promises (beside -v's lines).
func TestListenerFailureReportedOnce(t *testing.T) {
	stdin := iotest.ErrReader(errors.New("boom"))
	_, port, l := startListenerIn(t, context.Background(), stdin, "--timeout", "10s", "127.0.0.1", "0")
	// stdin is read once a first connection is served; tapscat may abort
	// it before the dial returns (a reset)
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port)); err == nil {
		defer c.Close()
	}
	r := l.wait()
	require.Equal(t, exitFailure, r.code, "stderr: %s", r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	require.Equal(t, "tapscat: reading stdin: boom", lines[len(lines)-1], "stderr: %s", r.stderr)
	for _, line := range lines {
		// -v's lines; a connection's error would be "connection from PEER: ERROR"
		_, after, _ := strings.Cut(line, "tapscat: connection from ")
		require.NotContains(t, after, ": ", "a second error line: %s", r.stderr)
	}
}

// TestListenerTimeoutReportedOnce: at --timeout a listening tapscat
// aborts the connections still open without reporting each as a
// connection error: status 1 with the one line "timeout after ...".
func TestListenerTimeoutReportedOnce(t *testing.T) {
	_, port, l := startListener(t, "--echo", "--timeout", "300ms", "127.0.0.1", "0")
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("x")) // served: echoed back
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)
	r := l()
	require.Equal(t, exitFailure, r.code, "stderr: %s", r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	require.Equal(t, "tapscat: timeout after 300ms", lines[len(lines)-1], "stderr: %s", r.stderr)
	for _, line := range lines {
		_, after, _ := strings.Cut(line, "tapscat: connection from ")
		require.NotContains(t, after, ": ", "a second error line: %s", r.stderr)
	}
}
