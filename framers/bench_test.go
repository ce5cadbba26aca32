package framers

import (
	"bytes"
	"testing"
)

// BenchmarkLengthPrefixParse feeds reads of 1024 framed 64-byte messages.
func BenchmarkLengthPrefixParse(b *testing.B) {
	const msgs, size = 1024, 64
	wire := bytes.Repeat(lp(string(bytes.Repeat([]byte{'m'}, size))), msgs)
	f := NewLengthPrefix()
	got := 0
	inst := NewInstance(Hooks{Deliver: func(_ Metadata, d []byte, _ bool) { got += len(d) }}, 0)
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		// Every read is consumed whole and never written to, so the same
		// slice can be handed over again.
		inst.Received(f, wire, false)
	}
	if inst.Failed() || inst.Buffered() != 0 || got%(msgs*size) != 0 {
		b.Fatalf("failed=%v buffered=%d delivered=%d", inst.Failed(), inst.Buffered(), got)
	}
}

// BenchmarkLengthPrefixSend frames 64-byte messages.
func BenchmarkLengthPrefixSend(b *testing.B) {
	payload := bytes.Repeat([]byte{'m'}, 64)
	f := NewLengthPrefix()
	sent := 0
	inst := NewInstance(Hooks{Send: func(d []byte) { sent += len(d) }}, 0)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		f.NewSentMessage(inst, payload, nil, true)
	}
	if sent == 0 {
		b.Fatal("nothing sent")
	}
}
