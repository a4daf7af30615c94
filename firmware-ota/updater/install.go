package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/internal/fsx"
)

// Installer puts a verified artifact in place of the running binary and
// can put the previous one back. FileInstaller is the real one; tests use
// fakes.
type Installer interface {
	// Stage writes the artifact read from r to the staging place, checking
	// with manifest.CheckArtifact the very bytes it writes, and makes it
	// durable. On any error nothing is left staged.
	Stage(ctx context.Context, m manifest.Manifest, r io.Reader) error
	// Installed reports whether the binary in place is the artifact with
	// m's size and digest.
	Installed(m manifest.Manifest) (bool, error)
	// Swap keeps the binary in place as the previous one and atomically
	// puts the staged one in its place; at every moment one complete
	// binary is in place. It fails with ErrNotStaged if nothing is staged.
	Swap() error
	// Rollback atomically puts the previous binary back in place. It fails
	// with ErrNoPrevious if there is none.
	Rollback() error
	// Discard removes a staged artifact, if any.
	Discard() error
}

// Installer errors callers branch on.
var (
	ErrNotStaged  = errors.New("no staged binary")
	ErrNoPrevious = errors.New("no previous binary to roll back to")
)

// FileInstaller replaces the executable at Path: Path.new is staged next to
// it (same directory, so the rename is atomic), the previous binary is kept
// as Path.prev (a hard link, or a synced copy where links are impossible).
type FileInstaller struct {
	Path string

	hook func(step string) error // tests: simulate a crash between steps
}

// Staged, Previous return the file names FileInstaller uses.
func (f FileInstaller) Staged() string   { return f.Path + ".new" }
func (f FileInstaller) Previous() string { return f.Path + ".prev" }

var _ Installer = FileInstaller{}

func (f FileInstaller) step(name string) error {
	if f.hook != nil {
		return f.hook(name)
	}
	return nil
}

// Stage implements Installer.
func (f FileInstaller) Stage(ctx context.Context, m manifest.Manifest, r io.Reader) (err error) {
	out, err := os.OpenFile(f.Staged(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
	if err != nil {
		return fmt.Errorf("updater: stage: %w", err)
	}
	defer func() {
		if err != nil {
			_ = out.Close()
			_ = os.Remove(f.Staged())
		}
	}()
	if err := manifest.CheckArtifact(m, io.TeeReader(ctxReader{ctx, r}, out)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("updater: stage %s: %w", f.Staged(), err)
	}
	if err := out.Chmod(0o755); err != nil {
		return fmt.Errorf("updater: stage: %w", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("updater: stage: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("updater: stage: %w", err)
	}
	if err := fsx.SyncDir(filepath.Dir(f.Path)); err != nil {
		return fmt.Errorf("updater: stage: %w", err)
	}
	return nil
}

// Installed implements Installer.
func (f FileInstaller) Installed(m manifest.Manifest) (bool, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return false, fmt.Errorf("updater: %w", err)
	}
	defer func() { _ = fh.Close() }() // read-only
	err = manifest.CheckArtifact(m, fh)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, manifest.ErrSizeMismatch) || errors.Is(err, manifest.ErrDigestMismatch):
		return false, nil
	}
	return false, fmt.Errorf("updater: %w", err)
}

// Swap implements Installer: Path.prev is replaced by a hard link to Path
// (so Path never disappears), then Path.new is renamed over Path.
func (f FileInstaller) Swap() error {
	if _, err := os.Stat(f.Staged()); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("updater: swap: %w (%s)", ErrNotStaged, f.Staged())
	} else if err != nil {
		return fmt.Errorf("updater: swap: %w", err)
	}
	if err := os.Remove(f.Previous()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("updater: swap: %w", err)
	}
	if err := os.Link(f.Path, f.Previous()); err != nil {
		if err := copyFile(f.Path, f.Previous()); err != nil {
			return fmt.Errorf("updater: swap: keep the previous binary: %w", err)
		}
	}
	if err := fsx.SyncDir(filepath.Dir(f.Path)); err != nil {
		return fmt.Errorf("updater: swap: %w", err)
	}
	if err := f.step("prev-kept"); err != nil {
		return err
	}
	if err := os.Rename(f.Staged(), f.Path); err != nil {
		return fmt.Errorf("updater: swap: %w", err)
	}
	if err := fsx.SyncDir(filepath.Dir(f.Path)); err != nil {
		return fmt.Errorf("updater: swap: %w", err)
	}
	return nil
}

// Rollback implements Installer: Path.prev is renamed over Path.
func (f FileInstaller) Rollback() error {
	if _, err := os.Stat(f.Previous()); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("updater: rollback: %w (%s)", ErrNoPrevious, f.Previous())
	} else if err != nil {
		return fmt.Errorf("updater: rollback: %w", err)
	}
	if err := os.Rename(f.Previous(), f.Path); err != nil {
		return fmt.Errorf("updater: rollback: %w", err)
	}
	if err := fsx.SyncDir(filepath.Dir(f.Path)); err != nil {
		return fmt.Errorf("updater: rollback: %w", err)
	}
	return nil
}

// Discard implements Installer.
func (f FileInstaller) Discard() error {
	if err := os.Remove(f.Staged()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("updater: %w", err)
	}
	return nil
}

// copyFile copies src to dst (same mode) through a synced temporary file.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }() // read-only
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	return fsx.WriteReaderAtomic(dst, in, fi.Mode().Perm())
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
