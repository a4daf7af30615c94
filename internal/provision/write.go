package provision

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Progress draws a one-line progress bar, redrawn in place with \r.
type Progress struct {
	W     io.Writer
	Verb  string // "writing", "verifying"
	Total int64
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	start, last time.Time
}

func (p *Progress) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Update draws the bar for done bytes, at most five times a second.
func (p *Progress) Update(done int64) {
	if p.W == nil {
		return
	}
	t := p.now()
	if p.start.IsZero() {
		p.start = t
	}
	if done < p.Total && t.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = t
	const width = 30
	frac := 1.0
	if p.Total > 0 {
		frac = float64(done) / float64(p.Total)
	}
	n := int(frac * width)
	rate := ""
	if s := t.Sub(p.start).Seconds(); s > 0.5 {
		rate = fmt.Sprintf("  %s/s", human(int64(float64(done)/s)))
	}
	fmt.Fprintf(p.W, "\r%-9s [%s%s] %3.0f%%  %s / %s%s   ", p.Verb, strings.Repeat("=", n), strings.Repeat(" ", width-n),
		frac*100, human(done), human(p.Total), rate)
}

// Done ends the line.
func (p *Progress) Done(done int64) {
	if p.W == nil {
		return
	}
	p.last = time.Time{}
	p.Update(done)
	fmt.Fprintln(p.W)
}

const chunk = 4 << 20 // a multiple of every sector size

// WriteImage copies size bytes of src to the start of dst, drawing progress
// on pw (nil for none), syncs, and returns the SHA-256 of what it wrote.
func WriteImage(ctx context.Context, dst io.WriterAt, src io.Reader, size int64, pw io.Writer) ([32]byte, error) {
	if size%512 != 0 {
		return [32]byte{}, fmt.Errorf("image size %d is not a multiple of 512 bytes: not a disk image", size)
	}
	h := sha256.New()
	p := &Progress{W: pw, Verb: "writing", Total: size}
	buf := make([]byte, chunk)
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return [32]byte{}, err
		}
		n, err := io.ReadFull(src, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			return [32]byte{}, fmt.Errorf("read image at %d: %w", off, err)
		}
		if _, err := dst.WriteAt(buf[:n], off); err != nil {
			return [32]byte{}, fmt.Errorf("write device at %d: %w", off, err)
		}
		h.Write(buf[:n])
		off += int64(n)
		p.Update(off)
	}
	if f, ok := dst.(*os.File); ok {
		if err := f.Sync(); err != nil {
			return [32]byte{}, fmt.Errorf("sync device: %w", err)
		}
	}
	p.Done(off)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// ErrVerify is a card that does not read back what was written.
var ErrVerify = errors.New("verify failed: the card does not hold what was written (a failing or fake card?)")

// VerifyImage reads back the first size bytes of dev (after dropping the
// page cache, so they come from the card) and compares their SHA-256 with want.
func VerifyImage(ctx context.Context, dev io.ReaderAt, size int64, want [32]byte, pw io.Writer) error {
	if f, ok := dev.(*os.File); ok {
		if err := dropCache(f); err != nil {
			return fmt.Errorf("verify: drop cache: %w", err)
		}
	}
	h := sha256.New()
	p := &Progress{W: pw, Verb: "verifying", Total: size}
	buf := make([]byte, chunk)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := dev.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size-off) {
			return fmt.Errorf("verify: read at %d: %w", off, err)
		}
		h.Write(buf[:n])
		off += int64(n)
		p.Update(off)
	}
	p.Done(size)
	if got := h.Sum(nil); string(got) != string(want[:]) {
		return fmt.Errorf("%w: sha256 %x, wrote %x", ErrVerify, got, want)
	}
	return nil
}

// AlignedDevice does sector-aligned I/O on a disk device whatever the
// offsets and lengths asked for (read-modify-write at the edges): macOS's
// raw /dev/rdiskN refuses anything else, and FAT directory entries are 32
// bytes.
type AlignedDevice struct {
	F interface {
		io.ReaderAt
		io.WriterAt
	}
	Sector int64 // 512 when 0
}

func (a AlignedDevice) sector() int64 {
	if a.Sector == 0 {
		return 512
	}
	return a.Sector
}

// ReadAt implements io.ReaderAt.
func (a AlignedDevice) ReadAt(p []byte, off int64) (int, error) {
	s := a.sector()
	if off%s == 0 && int64(len(p))%s == 0 {
		return a.F.ReadAt(p, off)
	}
	start := off / s * s
	end := (off + int64(len(p)) + s - 1) / s * s
	buf := make([]byte, end-start)
	if _, err := a.F.ReadAt(buf, start); err != nil {
		return 0, err
	}
	return copy(p, buf[off-start:]), nil
}

// WriteAt implements io.WriterAt.
func (a AlignedDevice) WriteAt(p []byte, off int64) (int, error) {
	s := a.sector()
	if off%s == 0 && int64(len(p))%s == 0 {
		return a.F.WriteAt(p, off)
	}
	start := off / s * s
	end := (off + int64(len(p)) + s - 1) / s * s
	buf := make([]byte, end-start)
	if _, err := a.F.ReadAt(buf, start); err != nil {
		return 0, err
	}
	copy(buf[off-start:], p)
	if _, err := a.F.WriteAt(buf, start); err != nil {
		return 0, err
	}
	return len(p), nil
}
