// Command tapscat is the netcat of TAPS: it opens a gotaps Connection (or a
// Listener) and copies messages between it and stdin/stdout. It is meant
// for people studying the TAPS state machines (--trace prints every state
// change, racing event and message event as one JSON object per line on
// stderr) and for scripts.
//
// Usage:
//
//	tapscat [flags] HOST PORT          initiate; each message read from stdin is sent,
//	                                   each received message is printed
//	tapscat -l [flags] [ADDR] PORT     listen (default: all addresses); with --echo every
//	                                   received message is sent back on its connection
//
// Without a framer (--framer none, the default) stdin and stdout are byte
// streams copied both ways (over UDP each datagram received is a message,
// an empty one too: it counts toward --count and --echo sends it back);
// with --framer length or --framer line they are line-based: one line is
// one message.
//
// When stdin ends, tapscat waits until --count messages have arrived (when
// given), then closes the connection gracefully (every queued message is
// delivered first, the peer sees the end of the stream) and exits; without
// a framer and without --count, an initiating tapscat sends its end of
// stream at once and prints what the peer sends until the peer closes
// (netcat's -N); over UDP, which has no end of stream, it closes at once. A close by the peer also ends an initiating tapscat. A
// listener serves its connections concurrently (stdin is read once the
// first one has arrived, and each message is sent to every open one) and
// ends once stdin has ended and --count messages have arrived over all
// connections (without --count it does not end with stdin), at --timeout,
// or on an interrupt.
//
// Exit status: 0 on a clean close, 1 with a one-line error on stderr
// otherwise (establishment failure, certificate rejected, connection
// error, timeout), 2 for a usage error, 130 when interrupted (SIGINT or
// SIGTERM).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
