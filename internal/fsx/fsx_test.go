package fsx

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// create must not replace a file that appeared after WriteFiles' pre-check
// (O_EXCL), and WriteFiles must remove what it created when a later file
// fails.
func TestWriteFilesExclusiveAndRollback(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.key")
	if err := os.WriteFile(a, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := create(File{a, []byte("new"), 0o600}); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), a) {
		t.Errorf("create over an existing file: err = %v, want fs.ErrExist naming the file", err)
	}
	if got := mustRead(t, a); got != "old" {
		t.Errorf("existing file clobbered: %q", got)
	}
	if err := WriteFiles([]File{{a, []byte("new"), 0o600}}, false); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "use force") {
		t.Errorf("WriteFiles over an existing file: %v", err)
	}

	b := filepath.Join(dir, "b.key")
	missing := filepath.Join(dir, "no-such-dir", "c.crt")
	if err := WriteFiles([]File{{b, []byte("b"), 0o600}, {missing, []byte("c"), 0o644}}, false); err == nil {
		t.Fatal("WriteFiles into a missing directory succeeded")
	}
	if _, err := os.Lstat(b); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left behind after a failed WriteFiles", b)
	}

	if err := WriteFiles([]File{{a, []byte("forced"), 0o600}}, true); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, a); got != "forced" {
		t.Errorf("forced write: %q", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
}

// WriteFileAtomic sets the mode whatever the umask and the old file's mode,
// and leaves no temporary file.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 || mustRead(t, p) != "new\n" {
		t.Fatalf("after WriteFileAtomic: %v %v %q", st, err, mustRead(t, p))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
}

func TestReadLimited(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadLimited(p, 5); err != nil || string(b) != "12345" {
		t.Errorf("at the limit: %q %v", b, err)
	}
	if _, err := ReadLimited(p, 4); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p) {
		t.Errorf("over the limit: %v", err)
	}
}
