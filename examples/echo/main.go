// Command echo runs a gotaps Listener and a client in one process over
// loopback: the client sends framed messages (4-byte length prefix), the
// listener's connection echoes them, and every state transition of both
// connections is printed as it happens.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/taps"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run(out *os.File) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Print every state transition of every connection.
	sys := taps.NewSystem(taps.WithTracer(func(r *taps.TraceRecord) {
		if r.Kind == "state" {
			ev := ""
			if r.Event != "" {
				ev = " (" + r.Event + ")"
			}
			fmt.Fprintf(out, "connection %d: %s -> %s%s\n", r.ConnectionID, r.FromState, r.ToState, ev)
		}
	}))
	defer sys.Shutdown(context.Background())

	server := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithLocalEndpoint(taps.NewLocalEndpoint().WithIPAddress("127.0.0.1").WithPort(0)))
	server.AddFramer(framers.NewLengthPrefix())
	ln, err := server.Listen(ctx)
	if err != nil {
		return err
	}
	defer ln.Stop()
	addr, _ := ln.LocalEndpoints()[0].Addr()
	fmt.Fprintf(out, "listening on %s\n", addr)

	// The server side: echo every message back on its connection.
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		for {
			msg, err := conn.Receive(ctx)
			if err != nil {
				// the client's end of stream (or a failure): the peer's
				// close only half-closes, so end this side too
				_ = conn.Close()
				return
			}
			if err := conn.Send(ctx, msg.Data, nil); err != nil {
				return
			}
		}
	}()

	client := taps.NewPreconnection(taps.WithSystem(sys),
		taps.WithRemoteEndpoint(taps.NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(addr.Port())),
		taps.WithTransportProperties(taps.NewTransportProperties(taps.ReliableMessage)))
	client.AddFramer(framers.NewLengthPrefix())
	conn, err := client.Initiate(ctx)
	if err != nil {
		return err
	}
	for _, text := range []string{"hello", "transport", "services"} {
		if err := conn.Send(ctx, []byte(text), nil); err != nil {
			return err
		}
		msg, err := conn.Receive(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "echoed: %s\n", msg.Data)
	}
	if err := conn.Close(); err != nil {
		return err
	}
	select {
	case <-conn.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	return conn.Err()
}
