package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// FileTokens keeps the device token in a file; a refreshed token replaces it
// atomically (write, fsync, rename), so a power cut leaves the old or the new.
type FileTokens struct {
	path string
	mu   sync.Mutex
	tok  string
}

// OpenFileTokens reads the token file.
func OpenFileTokens(path string) (*FileTokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gateway: token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if strings.Count(t, ".") != 2 {
		return nil, fmt.Errorf("gateway: token: %s does not hold a JWT (three dot-separated parts)", path)
	}
	return &FileTokens{path: path, tok: t}, nil
}

// Token returns the current token.
func (f *FileTokens) Token() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tok
}

// Store replaces the token, in memory and on disk.
func (f *FileTokens) Store(raw string) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".token-*")
	if err != nil {
		return fmt.Errorf("gateway: token: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(raw + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("gateway: token: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("gateway: token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("gateway: token: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("gateway: token: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("gateway: token: %w", err)
	}
	f.mu.Lock()
	f.tok = raw
	f.mu.Unlock()
	return nil
}
