// Package fsx writes files so that a crash or power cut leaves either the old
// or the new content, never a torn file, and reads files with a size bound.
// Keys, certificates, tokens, calibrations, manifests and the update state
// all go through it.
package fsx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// File is one file of a set written by WriteFiles.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// WriteFileAtomic replaces path with data: a temporary file next to it gets
// the mode (whatever the umask), the data and an fsync, is renamed over path,
// and the directory is synced.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) error {
	return WriteReaderAtomic(path, bytes.NewReader(data), mode)
}

// WriteReaderAtomic is WriteFileAtomic with the content read from r.
func WriteReaderAtomic(path string, r io.Reader, mode fs.FileMode) error {
	if err := replace(path, r, mode); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// WriteFiles writes a set of files that belong together (a key pair, a
// certificate and its key). Without force it first checks that none exists,
// then creates each with O_EXCL, so it never replaces a file, not even one
// that appeared after the check (the error wraps fs.ErrExist and names the
// file); if one fails, the ones it created are removed again. With force
// each file is replaced atomically.
func WriteFiles(files []File, force bool) error {
	if !force {
		for _, f := range files {
			_, err := os.Lstat(f.Path)
			if err == nil {
				return existsError(f.Path)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	var created []string
	dirs := map[string]bool{}
	for _, f := range files {
		var err error
		if force {
			err = replace(f.Path, bytes.NewReader(f.Data), f.Mode)
		} else {
			err = create(f)
		}
		if err != nil {
			for _, p := range created {
				_ = os.Remove(p) // best effort: leave no half-written set behind
			}
			return err
		}
		created = append(created, f.Path)
		dirs[filepath.Dir(f.Path)] = true
	}
	for d := range dirs {
		_ = SyncDir(d) // the files themselves are synced
	}
	return nil
}

func existsError(path string) error {
	return fmt.Errorf("refusing to overwrite %s (use force): %w", path, fs.ErrExist)
}

// create creates f.Path with O_EXCL.
func create(f File) (err error) {
	fh, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.Mode)
	if errors.Is(err, fs.ErrExist) {
		return existsError(f.Path)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = fh.Close()
			_ = os.Remove(f.Path)
		}
	}()
	return fill(fh, bytes.NewReader(f.Data), f.Mode)
}

// replace writes a temporary file next to path and renames it over.
func replace(path string, r io.Reader, mode fs.FileMode) (err error) {
	fh, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = fh.Close()
			_ = os.Remove(fh.Name())
		}
	}()
	if err := fill(fh, r, mode); err != nil {
		return err
	}
	return os.Rename(fh.Name(), path)
}

// fill sets the mode, writes, syncs and closes.
func fill(fh *os.File, r io.Reader, mode fs.FileMode) error {
	if err := fh.Chmod(mode); err != nil {
		return err
	}
	if _, err := io.Copy(fh, r); err != nil {
		return err
	}
	if err := fh.Sync(); err != nil {
		return err
	}
	return fh.Close()
}

// SyncDir makes renames and new entries in dir durable. File systems that
// cannot sync a directory (EINVAL, ENOTSUP) are not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrTooLarge is wrapped by ReadLimited's error for a file over the limit.
var ErrTooLarge = errors.New("file too large")

// ReadLimited reads path, refusing one longer than limit bytes.
func ReadLimited(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = fh.Close() }() // read-only: Close cannot lose data
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrTooLarge, path, limit)
	}
	return data, nil
}
