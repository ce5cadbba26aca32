package stacks

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// soAcceptCon is __SO_ACCEPTCON, the Flags bit of a listening socket in
// /proc/net/unix.
const soAcceptCon = 1 << 16

// unixListening reports whether /proc/net/unix lists a listening socket
// bound to path (as given, or absolute), so that Listen can tell a live
// socket file from a stale one without connecting to it (a probe
// connection would be delivered to that listener). It reports false when
// it cannot tell: the caller then probes.
func unixListening(path string) bool {
	names := map[string]bool{path: true}
	if abs, err := filepath.Abs(path); err == nil {
		names[abs] = true
	}
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		var flags uint64
		for _, c := range fields[3] {
			d := strings.IndexRune("0123456789abcdef", c|0x20)
			if d < 0 {
				flags = 0
				break
			}
			flags = flags<<4 | uint64(d)
		}
		if flags&soAcceptCon != 0 && names[strings.Join(fields[7:], " ")] {
			return true
		}
	}
	return false
}
