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
// tapstrace takes no arguments: with any (-h, say) it prints its usage
// without reading stdin (exit status 0 for -h and --help, else 2).
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

const usage = "usage: tapstrace < trace.jsonl > race.svg   (the JSON lines of tapscat --trace or taps.WithTraceWriter)\n"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// run is tapstrace's main: it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		// no flags: without this, -h waited on a terminal's stdin
		fmt.Fprint(stderr, usage)
		if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	recs, err := ReadTrace(stdin, stderr)
	if err == nil && len(recs) == 0 {
		err = fmt.Errorf("no trace records on stdin")
	}
	if err == nil {
		_, err = stdout.Write(Render(recs))
	}
	if err != nil {
		fmt.Fprintln(stderr, "tapstrace:", err)
		return 1
	}
	return 0
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
