package provision

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// strict refuses I/O that is not sector-aligned, like macOS's /dev/rdiskN.
type strict struct{ f *os.File }

func (s strict) ReadAt(p []byte, off int64) (int, error) {
	if off%512 != 0 || len(p)%512 != 0 {
		return 0, fmt.Errorf("unaligned read %d@%d", len(p), off)
	}
	return s.f.ReadAt(p, off)
}

func (s strict) WriteAt(p []byte, off int64) (int, error) {
	if off%512 != 0 || len(p)%512 != 0 {
		return 0, fmt.Errorf("unaligned write %d@%d", len(p), off)
	}
	return s.f.WriteAt(p, off)
}

func TestWriteAndVerifyImage(t *testing.T) {
	img := buildImage(t, imageSpec{Bits: 64})
	size := fileSize(t, img)
	card, err := os.Create(t.TempDir() + "/card")
	if err != nil {
		t.Fatal(err)
	}
	defer card.Close()
	card.Truncate(size + 8<<20) // a card is bigger than the image
	src, _ := os.Open(img)
	defer src.Close()
	var progress bytes.Buffer
	sum, err := WriteImage(context.Background(), card, src, size, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if sum != hashRange(t, img, 0, size) {
		t.Error("write hash differs from the image's")
	}
	if !strings.Contains(progress.String(), "100%") || !strings.Contains(progress.String(), "writing") {
		t.Errorf("progress: %q", progress.String())
	}
	if err := VerifyImage(context.Background(), card, size, sum, &progress); err != nil {
		t.Fatal(err)
	}
	// Then the card is edited like an image, through sector-aligned I/O only.
	res, err := Prepare(AlignedDevice{F: strict{card}}, size+8<<20, prepareOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Arch != ARM64 {
		t.Errorf("arch %s", res.Arch)
	}
	// A card that does not hold what was written fails the verify.
	card.WriteAt([]byte{0xff}, size/2)
	if err := VerifyImage(context.Background(), card, size, sum, nil); !errors.Is(err, ErrVerify) {
		t.Errorf("corrupt card: %v", err)
	}
	// Not a whole number of sectors: not a disk image.
	if _, err := WriteImage(context.Background(), card, bytes.NewReader(make([]byte, 1000)), 1000, nil); err == nil {
		t.Error("odd size accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WriteImage(ctx, card, bytes.NewReader(make([]byte, 1024)), 1024, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestAlignedDevice(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/d")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := make([]byte, 8192)
	rand.Read(want)
	f.Write(want)
	a := AlignedDevice{F: strict{f}}
	if _, err := a.WriteAt([]byte("hello"), 510); err != nil {
		t.Fatal(err)
	}
	copy(want[510:], "hello")
	got := make([]byte, 7)
	if _, err := a.ReadAt(got, 509); err != nil || !bytes.Equal(got, want[509:516]) {
		t.Errorf("read %q %v", got, err)
	}
	all := make([]byte, 8192)
	f.ReadAt(all, 0)
	if !bytes.Equal(all, want) {
		t.Error("read-modify-write changed other bytes")
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(0, 0)
	p := &Progress{W: &b, Verb: "writing", Total: 100 << 20, Now: func() time.Time { return now }}
	p.Update(0)
	now = now.Add(2 * time.Second)
	p.Update(50 << 20)
	now = now.Add(100 * time.Millisecond)
	p.Update(51 << 20) // too soon: not drawn
	now = now.Add(2 * time.Second)
	p.Done(100 << 20)
	out := b.String()
	if strings.Count(out, "\r") != 3 || !strings.Contains(out, " 50%  50.0 MiB / 100.0 MiB  25.0 MiB/s") || !strings.HasSuffix(out, "\n") {
		t.Errorf("%q", out)
	}
}
