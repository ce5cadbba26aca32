package framers

import (
	"bytes"
	"runtime"
)

// delivery is one Deliver hook call, its data copied.
type delivery struct {
	meta Metadata
	data []byte
	eom  bool
}

// recorder records what an Instance does through its Hooks.
type recorder struct {
	sent       [][]byte
	deliveries []delivery
	fails      []error
	ready      int
	closed     int
	prepended  []Framer
	passed     int
	afterFail  int // deliveries or sends after the first Fail
}

func (r *recorder) hooks() Hooks {
	return Hooks{
		Send: func(data []byte) {
			if len(r.fails) > 0 {
				r.afterFail++
			}
			r.sent = append(r.sent, data)
		},
		Deliver: func(meta Metadata, data []byte, eom bool) {
			if len(r.fails) > 0 {
				r.afterFail++
			}
			r.deliveries = append(r.deliveries, delivery{meta: meta, data: bytes.Clone(data), eom: eom})
		},
		Ready:       func() { r.ready++ },
		Closed:      func() { r.closed++ },
		Fail:        func(err error) { r.fails = append(r.fails, err) },
		Prepend:     func(f Framer) { r.prepended = append(r.prepended, f) },
		Passthrough: func() { r.passed++ },
	}
}

// newRecorded returns a recorder and an Instance wired to it.
func newRecorded(maxBuffered int) (*recorder, *Instance) {
	r := &recorder{}
	return r, NewInstance(r.hooks(), maxBuffered)
}

// messages joins the deliveries into messages: parts up to one with eom.
// A trailing incomplete message is returned too.
func (r *recorder) messages() [][]byte {
	var out [][]byte
	var cur []byte
	open := false
	for _, d := range r.deliveries {
		cur = append(cur, d.data...)
		open = true
		if d.eom {
			out = append(out, append([]byte{}, cur...))
			cur, open = nil, false
		}
	}
	if open {
		out = append(out, cur)
	}
	return out
}

// wire concatenates everything sent.
func (r *recorder) wire() []byte { return bytes.Join(r.sent, nil) }

// err returns the first failure, or nil.
func (r *recorder) err() error {
	if len(r.fails) == 0 {
		return nil
	}
	return r.fails[0]
}

// feed passes chunks to inst, the last one with eos when eos is set. Each
// chunk is copied, since the Instance takes ownership.
func feed(f Framer, inst *Instance, chunks [][]byte, eos bool) {
	for i, c := range chunks {
		inst.Received(f, bytes.Clone(c), eos && i == len(chunks)-1)
	}
	if eos && len(chunks) == 0 {
		inst.Received(f, nil, true)
	}
}

// bytewise splits b into one-byte chunks.
func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

// chunk splits b into pieces of n bytes.
func chunk(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func strs(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

// lp frames msg in the length-prefix format.
func lp(msg string) []byte {
	n := len(msg)
	return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, msg...)
}

// allocated reports the bytes fn allocates on the heap.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
