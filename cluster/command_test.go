package cluster

import (
	"bytes"
	"errors"
	"testing"
)

func TestCommandsRoundTrip(t *testing.T) {
	for _, c := range []Command{
		{Op: OpSet, Key: []byte("k"), Value: []byte("v")},
		{Op: OpDelete, Key: []byte("k")},
		{Op: OpGet, Key: []byte("k")},
		{Op: OpCAS, Key: []byte("k"), Value: []byte("new"), Expected: []byte("old")},
		{Op: OpCAS, Key: []byte("k"), Value: []byte("new"), ExpectAbsent: true},
	} {
		got, err := DecodeCommand(c.Encode())
		if err != nil || !got.Equal(c) {
			t.Fatalf("%v round-trips to %v, %v", c, got, err)
		}
	}
}

func TestMalformedCommandsAreRejected(t *testing.T) {
	good := Command{Op: OpSet, Key: []byte("k"), Value: []byte("v")}.Encode()
	for name, data := range map[string][]byte{
		"empty":         nil,
		"wrong version": append([]byte{9}, good[1:]...),
		"unknown op":    append([]byte{good[0], 77}, good[2:]...),
		"unknown flag":  append([]byte{good[0], good[1], 2}, good[3:]...),
		"truncated":     good[:len(good)-1],
		"trailing":      append(bytes.Clone(good), 0),
	} {
		if _, err := DecodeCommand(data); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: got %v, want ErrBadCommand", name, err)
		}
	}
}

// FuzzDecodeCommand: no input panics the decoder, and whatever it accepts
// re-encodes to the same bytes.
func FuzzDecodeCommand(f *testing.F) {
	f.Add(Command{Op: OpCAS, Key: []byte("k"), Value: []byte("v"), Expected: []byte("e")}.Encode())
	f.Add([]byte{1, 1, 0, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Encode(), data) {
			t.Fatalf("accepted a non-canonical command")
		}
	})
}
