package manifest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

type file struct {
	path string
	data []byte
	mode fs.FileMode
}

// writeFiles writes files. Without force it first checks that none exists,
// then creates each with O_EXCL; if one fails, the ones it created are
// removed again. With force each file is replaced atomically.
func writeFiles(files []file, force bool) error {
	if !force {
		for _, f := range files {
			_, err := os.Lstat(f.path)
			if err == nil {
				return existsError(f.path)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("manifest: %w", err)
			}
		}
	}
	var created []string
	for _, f := range files {
		var err error
		if force {
			err = replaceFile(f)
		} else {
			err = createFile(f)
		}
		if err != nil {
			for _, p := range created {
				_ = os.Remove(p) // best effort: leave no half-written key pair behind
			}
			return err
		}
		created = append(created, f.path)
	}
	syncDir(filepath.Dir(files[0].path))
	return nil
}

func existsError(path string) error {
	return fmt.Errorf("manifest: refusing to overwrite %s (use force): %w", path, fs.ErrExist)
}

// createFile creates f.path with O_EXCL, so it never replaces a file.
func createFile(f file) (err error) {
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if errors.Is(err, fs.ErrExist) {
		return existsError(f.path)
	}
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	defer func() {
		if err != nil {
			_ = fh.Close()
			_ = os.Remove(f.path)
		}
	}()
	return fill(fh, f)
}

// replaceFile writes a temporary file next to f.path and renames it over.
func replaceFile(f file) (err error) {
	fh, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	defer func() {
		if err != nil {
			_ = fh.Close()
			_ = os.Remove(fh.Name())
		}
	}()
	if err := fill(fh, f); err != nil {
		return err
	}
	if err := os.Rename(fh.Name(), f.path); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// fill sets the mode (independent of the umask), writes, syncs and closes.
func fill(fh *os.File, f file) error {
	if err := fh.Chmod(f.mode); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if _, err := fh.Write(f.data); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := fh.Sync(); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// syncDir makes new directory entries durable; best effort, as some file
// systems cannot fsync a directory and the files themselves are synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// readLimited reads path, failing if it is longer than limit bytes, with an
// error that wraps tooLarge if it is not nil.
func readLimited(path string, limit int64, tooLarge error) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer func() { _ = fh.Close() }() // read-only: Close cannot lose data
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, fmt.Errorf("manifest: read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		if tooLarge != nil {
			return nil, fmt.Errorf("manifest: %w: %s is larger than %d bytes", tooLarge, path, limit)
		}
		return nil, fmt.Errorf("manifest: %s is larger than %d bytes", path, limit)
	}
	return data, nil
}
