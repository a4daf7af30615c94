package certs

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MaxPEMFile bounds what we read from a certificate or key file.
const MaxPEMFile = 1 << 20

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
				return fmt.Errorf("certs: %w", err)
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
				_ = os.Remove(p) // best effort: leave no half-written PKI behind
			}
			return err
		}
		created = append(created, f.path)
	}
	syncDirs(files)
	return nil
}

func existsError(path string) error {
	return fmt.Errorf("certs: refusing to overwrite %s (use force): %w", path, fs.ErrExist)
}

// createFile creates f.path with O_EXCL, so it never replaces a file.
func createFile(f file) (err error) {
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if errors.Is(err, fs.ErrExist) {
		return existsError(f.path)
	}
	if err != nil {
		return fmt.Errorf("certs: %w", err)
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
		return fmt.Errorf("certs: %w", err)
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
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// fill sets the mode (independent of the umask), writes, syncs and closes.
func fill(fh *os.File, f file) error {
	if err := fh.Chmod(f.mode); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := fh.Write(f.data); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := fh.Sync(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// syncDirs makes the new directory entries durable. It is best effort: some
// file systems cannot fsync a directory, and the files themselves are synced.
func syncDirs(files []file) {
	done := map[string]bool{}
	for _, f := range files {
		dir := filepath.Dir(f.path)
		if done[dir] {
			continue
		}
		done[dir] = true
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			_ = d.Close()
		}
	}
}

func mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

func readPEMFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	defer func() { _ = fh.Close() }() // read-only: Close cannot lose data
	data, err := io.ReadAll(io.LimitReader(fh, MaxPEMFile+1))
	if err != nil {
		return nil, fmt.Errorf("certs: read %s: %w", path, err)
	}
	if len(data) > MaxPEMFile {
		return nil, fmt.Errorf("certs: %w: %s is larger than %d bytes", ErrBadPKI, path, MaxPEMFile)
	}
	return data, nil
}

// readCerts parses every PEM block of path; each must be a CERTIFICATE and
// there must be at least one.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := readPEMFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("certs: %w: %s: PEM block %d is %q, want CERTIFICATE", ErrBadPKI, path, len(certs)+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: %w: %s: certificate %d: %w", ErrBadPKI, path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("certs: %w: %s holds no PEM CERTIFICATE block", ErrBadPKI, path)
	}
	return certs, nil
}

// readLeaf returns the first certificate of path.
func readLeaf(path string) (*x509.Certificate, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// readKey parses a PKCS #8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY")
// private key.
func readKey(path string) (crypto.Signer, error) {
	data, err := readPEMFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("certs: %w: %s holds no PEM block", ErrBadPKI, path)
	}
	var key any
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("certs: %w: %s: PEM block is %q, want PRIVATE KEY", ErrBadPKI, path, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("certs: %w: %s: %w", ErrBadPKI, path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certs: %w: %s: key type %T cannot sign", ErrBadPKI, path, key)
	}
	return s, nil
}
