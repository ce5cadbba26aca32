package stacks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
)

// ErrNoPath is returned by the Unix stack when Options.Path is empty.
var ErrNoPath = errors.New("unix stack needs Options.Path")

type unixStack struct{}

// Unix returns the Unix domain stream socket stack. Its endpoints are
// filesystem paths, given in Options.Path (Dial and Listen ignore the
// remote and local IP addresses), or use DialPath and ListenPath. It is a
// reliable ordered byte stream like TCP; Abort is Close (Unix sockets have
// no reset). It is not part of All, which serves IP endpoints.
//
// Listen removes a stale socket file at the path (a socket nothing listens
// on any more) and fails if another process still listens there; the file
// is removed when the Listener is closed (unless it was replaced since:
// another listener's socket is left alone).
func Unix() Stack { return unixStack{} }

func (unixStack) Name() string { return "unix" }

func (unixStack) Capabilities() Capabilities {
	return Capabilities{
		Reliability:          true,
		PreserveOrder:        true,
		CongestionControl:    true, // local flow control; nothing to congest
		FullChecksumSend:     true,
		FullChecksumRecv:     true,
		ActiveReadBeforeSend: true,
	}
}

func (unixStack) Dial(ctx context.Context, _ netip.AddrPort, opts Options) (Transport, error) {
	return DialPath(ctx, opts.Path, opts)
}

func (unixStack) Listen(ctx context.Context, opts Options) (Listener, error) {
	return ListenPath(ctx, opts.Path, opts)
}

// DialPath connects to the Unix domain stream socket at path.
func DialPath(ctx context.Context, path string, _ Options) (Transport, error) {
	if path == "" {
		return nil, ErrNoPath
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return &unixTransport{UnixConn: c.(*net.UnixConn)}, nil
}

// ListenPath listens on a Unix domain stream socket at path, replacing a
// stale socket file.
func ListenPath(ctx context.Context, path string, opts Options) (Listener, error) {
	if path == "" {
		return nil, ErrNoPath
	}
	if err := removeStaleSocket(ctx, path); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	ul := &unixListener{ln: ln.(*net.UnixListener)}
	if path[0] != '@' { // abstract names have no file
		// Close removes the socket file only while it is still the one
		// made here: not another listener's that replaced it
		ul.ln.SetUnlinkOnClose(false)
		ul.path = path
		ul.file, _ = os.Lstat(path)
		ownSockets.add(ul)
	}
	return ul, nil
}

// ownSockets are the socket files this process listens on, so that a
// Listen on one of them fails without a probe connection (which its
// listener would receive as a connection), whatever /proc/net/unix shows:
// the kernel's listing can skip entries while sockets come and go.
var ownSockets = unixOwn{files: map[*unixListener]fs.FileInfo{}}

type unixOwn struct {
	mu    sync.Mutex
	files map[*unixListener]fs.FileInfo
}

func (o *unixOwn) add(l *unixListener) {
	if l.file == nil {
		return
	}
	o.mu.Lock()
	o.files[l] = l.file
	o.mu.Unlock()
}

func (o *unixOwn) remove(l *unixListener) {
	o.mu.Lock()
	delete(o.files, l)
	o.mu.Unlock()
}

// listening tells whether fi is the socket file of a listener of this
// process.
func (o *unixOwn) listening(fi fs.FileInfo) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range o.files {
		if os.SameFile(f, fi) {
			return true
		}
	}
	return false
}

// removeStaleSocket deletes path if it is a socket nobody accepts on. A
// socket of this process's listeners, or one this system lists as
// listening there (Linux: /proc/net/unix), is live without a probe; otherwise a probe connection tells (which a live
// listener the list missed, e.g. in another network namespace, accepts).
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen unix %s: file exists and is not a socket", path)
	}
	if ownSockets.listening(fi) || unixListening(path) {
		return fmt.Errorf("listen unix %s: %w", path, syscall.EADDRINUSE)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("listen unix %s: %w", path, syscall.EADDRINUSE)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return err
	}
	return os.Remove(path)
}

type unixTransport struct{ *net.UnixConn }

// Abort closes the socket; Unix sockets have no reset.
func (t *unixTransport) Abort() error { return t.Close() }

func (t *unixTransport) Info() (TransportInfo, error) {
	info := TransportInfo{
		Stack:             "unix",
		SendMsgMaxLen:     MaxLen{Unlimited: true},
		RecvMsgMaxLen:     MaxLen{Unlimited: true},
		SingularMsgMaxLen: -1, // no packets
	}
	rc, err := t.SyscallConn()
	if err != nil {
		return info, err
	}
	return info, readSockInfo(rc, sockUDP, &info)
}

type unixListener struct {
	ln   *net.UnixListener
	path string      // the socket file, "" for an abstract name
	file fs.FileInfo // the socket file as Listen made it
}

func (l *unixListener) Accept() (Transport, error) {
	c, err := l.ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	return &unixTransport{UnixConn: c}, nil
}

// Close stops listening and removes the socket file, unless it was
// replaced since Listen.
func (l *unixListener) Close() error {
	err := l.ln.Close()
	ownSockets.remove(l)
	if l.path != "" && l.file != nil && !errors.Is(err, net.ErrClosed) {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.file) {
			_ = os.Remove(l.path)
		}
	}
	return err
}

func (l *unixListener) Addr() net.Addr { return l.ln.Addr() }
