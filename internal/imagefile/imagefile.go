// Package imagefile reads the image files a user gives kiln predict: PGM
// (P2 or P5) and whatever the image package decodes (PNG, JPEG). It lives
// apart from cmd/kiln so that its fuzz target runs without building the
// command.
package imagefile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // JPEG too, at no cost
	_ "image/png"
	"io"
	"os"
)

// ReadFile decodes a PGM (P2 or P5) or anything the image package knows
// (PNG, JPEG).
func ReadFile(path string) (image.Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) >= 2 && b[0] == 'P' && (b[1] == '2' || b[1] == '5') {
		img, err := decodePGM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return img, nil
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: not a PNG, PGM or JPEG image: %w", path, err)
	}
	return img, nil
}

// decodePGM reads a binary (P5) or plain (P2) PGM with any maxval up to
// 65535, scaling values to 8 bits.
func decodePGM(b []byte) (*image.Gray, error) {
	r := bufio.NewReader(bytes.NewReader(b))
	magic, _ := r.ReadByte()
	kind, _ := r.ReadByte()
	if magic != 'P' || (kind != '2' && kind != '5') {
		return nil, errors.New("PGM: bad magic number")
	}
	var hdr [3]int // width, height, maxval
	for i := range hdr {
		v, err := pgmInt(r)
		if err != nil {
			return nil, fmt.Errorf("PGM header: %w", err)
		}
		hdr[i] = v
	}
	w, h, maxval := hdr[0], hdr[1], hdr[2]
	if w < 1 || h < 1 || w > 1<<15 || h > 1<<15 || maxval < 1 || maxval > 65535 {
		return nil, fmt.Errorf("PGM: bad header %d×%d, maxval %d", w, h, maxval)
	}
	img := image.NewGray(image.Rect(0, 0, w, h))
	scale := func(v int) (uint8, error) {
		if v > maxval {
			return 0, fmt.Errorf("PGM: value %d above maxval %d", v, maxval)
		}
		return uint8((v*255 + maxval/2) / maxval), nil
	}
	if kind == '5' {
		// Exactly one whitespace byte follows maxval; pgmInt consumed it.
		size := 1
		if maxval > 255 {
			size = 2
		}
		raw := make([]byte, w*h*size)
		if _, err := io.ReadFull(r, raw); err != nil {
			return nil, fmt.Errorf("PGM: %d×%d pixels need %d bytes: %w", w, h, len(raw), err)
		}
		for i := range img.Pix {
			v := int(raw[i])
			if size == 2 {
				v = int(raw[2*i])<<8 | int(raw[2*i+1])
			}
			p, err := scale(v)
			if err != nil {
				return nil, err
			}
			img.Pix[i] = p
		}
		return img, nil
	}
	for i := range img.Pix {
		v, err := pgmInt(r)
		if err != nil {
			return nil, fmt.Errorf("PGM pixel %d: %w", i, err)
		}
		if img.Pix[i], err = scale(v); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// pgmInt reads a decimal number after whitespace and # comments, and the
// one whitespace byte that ends it.
func pgmInt(r *bufio.Reader) (int, error) {
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	c, err := r.ReadByte()
	for err == nil && (space(c) || c == '#') {
		if c == '#' {
			_, err = r.ReadString('\n')
		}
		if err == nil {
			c, err = r.ReadByte()
		}
	}
	if err != nil {
		return 0, errors.New("truncated")
	}
	if c < '0' || c > '9' {
		return 0, fmt.Errorf("unexpected %q", c)
	}
	n := 0
	for {
		n = n*10 + int(c-'0')
		if n > 1<<20 {
			return 0, errors.New("number too large")
		}
		c, err = r.ReadByte()
		switch {
		case err == io.EOF:
			return n, nil
		case err != nil:
			return 0, err
		case space(c):
			return n, nil
		case c < '0' || c > '9':
			return 0, fmt.Errorf("unexpected %q", c)
		}
	}
}
