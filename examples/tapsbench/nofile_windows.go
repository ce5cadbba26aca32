package main

// raiseNofile does nothing on Windows: it has no RLIMIT_NOFILE (the
// number of open socket handles has no per-process soft limit to raise).
func raiseNofile() {}
