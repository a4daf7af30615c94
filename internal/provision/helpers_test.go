package provision

import (
	"os"
	"testing"

	"github.com/outpost-iot/outpost/internal/provision/provisiontest"
)

const (
	bootStart      = provisiontest.BootStart
	bootSize       = provisiontest.BootSize
	rootSize       = provisiontest.RootSize
	bookwormConfig = provisiontest.BookwormConfig
	stockCmdline   = provisiontest.StockCmdline
)

var stamp = provisiontest.Stamp

type imageSpec = provisiontest.ImageSpec

func buildImage(t *testing.T, spec imageSpec) string { return provisiontest.Image(t, spec) }
func fakeBinaries(t *testing.T) string               { return provisiontest.Binaries(t) }
func testCA(t *testing.T) []byte                     { return provisiontest.CA(t) }
func hashRange(t *testing.T, p string, off, n int64) [32]byte {
	return provisiontest.HashRange(t, p, off, n)
}

func TestMain(m *testing.M) {
	code := m.Run()
	provisiontest.Cleanup()
	os.Exit(code)
}
