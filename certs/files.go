package certs

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/outpost-iot/outpost/internal/fsx"
)

// MaxPEMFile bounds what we read from a certificate or key file.
const MaxPEMFile = 1 << 20

type file = fsx.File

// writeFiles writes a set of files that belong together (fsx.WriteFiles):
// without force it never replaces one.
func writeFiles(files []file, force bool) error {
	if err := fsx.WriteFiles(files, force); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

func mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

func readPEMFile(path string) ([]byte, error) {
	data, err := fsx.ReadLimited(path, MaxPEMFile)
	if errors.Is(err, fsx.ErrTooLarge) {
		return nil, fmt.Errorf("certs: %w: %w", ErrBadPKI, err)
	}
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
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
