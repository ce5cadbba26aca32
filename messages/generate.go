package messages

//go:generate protoc --go_out=. --go_opt=paths=source_relative taps.proto
