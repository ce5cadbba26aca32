package main

import (
	"bufio"
	"bytes"
	"io"
	"sync"
	"sync/atomic"
)

// lockedWriter serializes writes: the trace writer, the connections'
// receive loops and run itself share stdout and stderr.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// readChunk is the largest chunk of stdin sent as one message without a
// framer.
const readChunk = 32 << 10

// source reads stdin as messages: lines (the trailing "\n" removed; a last
// line without one is a message too) when framed, chunks as they come
// otherwise.
type source struct {
	r      *bufio.Reader
	raw    io.Reader
	framed bool
}

func newSource(r io.Reader, framed bool) *source {
	if r == nil {
		r = bytes.NewReader(nil)
	}
	if framed {
		return &source{r: bufio.NewReaderSize(r, 64<<10), framed: true}
	}
	return &source{raw: r}
}

// next returns the next message, or io.EOF when stdin has ended.
func (s *source) next() ([]byte, error) {
	if s.framed {
		line, err := s.r.ReadBytes('\n')
		if len(line) > 0 {
			return bytes.TrimSuffix(line, []byte("\n")), nil
		}
		return nil, err
	}
	buf := make([]byte, readChunk)
	for {
		n, err := s.raw.Read(buf)
		if n > 0 {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// sink prints received messages: one line each when framed, raw bytes
// otherwise.
type sink struct {
	w      io.Writer
	framed bool
}

func (s *sink) print(data []byte) error {
	if !s.framed {
		_, err := s.w.Write(data)
		return err
	}
	line := make([]byte, 0, len(data)+1)
	line = append(line, data...)
	_, err := s.w.Write(append(line, '\n'))
	return err
}

// counter counts received messages against --count, over every
// connection. A message is taken when it arrives and handled once it has
// been printed (and echoed): the limit is reached when the last one is
// handled, so nothing closes a connection before its last echo is sent.
// Its methods are safe for concurrent use.
type counter struct {
	limit   int64 // 0: no limit
	n       atomic.Int64
	handled atomic.Int64
	reached chan struct{}
}

func newCounter(limit int) *counter {
	return &counter{limit: int64(limit), reached: make(chan struct{})}
}

// take counts one message and reports whether it is within the limit
// (messages beyond it are neither printed nor echoed); the caller calls
// handle once it has dealt with one that is.
func (c *counter) take() bool {
	if c.limit == 0 {
		return true
	}
	return c.n.Add(1) <= c.limit
}

// handle records that a message take accepted has been printed and echoed.
func (c *counter) handle() {
	if c.limit != 0 && c.handled.Add(1) == c.limit {
		close(c.reached)
	}
}

// done reports whether the limit, when there is one, has been reached.
func (c *counter) done() bool { return c.limit == 0 || c.handled.Load() >= c.limit }
