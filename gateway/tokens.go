package gateway

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/outpost-iot/outpost/internal/fsx"
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

// Store replaces the token, on disk (atomically, 0600) and in memory.
func (f *FileTokens) Store(raw string) error {
	if err := fsx.WriteFileAtomic(f.path, []byte(raw+"\n"), 0o600); err != nil {
		return fmt.Errorf("gateway: token: %w", err)
	}
	f.mu.Lock()
	f.tok = raw
	f.mu.Unlock()
	return nil
}
