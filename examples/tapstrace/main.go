// Command tapstrace turns a gotaps trace (the JSON lines written by
// taps.WithTraceWriter or tapscat --trace) into an SVG racing timeline:
// one lane per racing candidate (when it started, when its handshake
// ended, whether it won or lost and why), then one lane per connection
// showing its walk through the RFC 9622 state machine (Establishing →
// Established → Closing → Closed), with times in milliseconds from the
// first record.
//
//	tapscat --trace example.org 80 < /dev/null 2> trace.jsonl
//	go run ./examples/tapstrace < trace.jsonl > race.svg
//
// Lines that are not trace records are skipped with a warning on stderr.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/gotaps/gotaps/messages"
	"google.golang.org/protobuf/encoding/protojson"
)

func main() {
	recs, err := ReadTrace(os.Stdin, os.Stderr)
	if err == nil && len(recs) == 0 {
		err = fmt.Errorf("no trace records on stdin")
	}
	if err == nil {
		_, err = os.Stdout.Write(Render(recs))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tapstrace:", err)
		os.Exit(1)
	}
}

// ReadTrace parses one protojson TraceRecord per line. Blank lines are
// skipped; a line that does not parse is reported on warn (when not nil)
// and skipped.
func ReadTrace(r io.Reader, warn io.Writer) ([]*messages.TraceRecord, error) {
	var out []*messages.TraceRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		rec := &messages.TraceRecord{}
		if err := opts.Unmarshal(line, rec); err != nil {
			if warn != nil {
				fmt.Fprintf(warn, "tapstrace: line %d skipped: %v\n", n, err)
			}
			continue
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}
