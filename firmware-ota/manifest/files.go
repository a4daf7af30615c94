package manifest

import (
	"errors"
	"fmt"

	"github.com/outpost-iot/outpost/internal/fsx"
)

type file = fsx.File

// writeFiles writes a set of files that belong together (fsx.WriteFiles):
// without force it never replaces one.
func writeFiles(files []file, force bool) error {
	if err := fsx.WriteFiles(files, force); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// readLimited reads path, failing if it is longer than limit bytes, with an
// error that wraps tooLarge if it is not nil.
func readLimited(path string, limit int64, tooLarge error) ([]byte, error) {
	data, err := fsx.ReadLimited(path, limit)
	if errors.Is(err, fsx.ErrTooLarge) && tooLarge != nil {
		return nil, fmt.Errorf("manifest: %w: %w", tooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return data, nil
}
