package main

import (
	"errors"
	"io"
)

func calibratePH(args []string, stdout, stderr io.Writer) error {
	return errors.New("calibrate ph: not available yet")
}
