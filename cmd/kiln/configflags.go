package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/trainer"
)

// wholeFlag is an integer training flag whose parse error says what the
// setting accepts (pflag's would only quote strconv).
type wholeFlag struct {
	p   *int
	key string // the configuration key
}

func (w *wholeFlag) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 0, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("must be %s", trainer.SettingRange(w.key))
	}
	*w.p = int(n)
	return nil
}

func (w *wholeFlag) String() string { return strconv.Itoa(*w.p) }
func (w *wholeFlag) Type() string   { return "int" }

// uintFlag is wholeFlag for the seed.
type uintFlag struct {
	p   *uint64
	key string
}

func (u *uintFlag) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 0, 64)
	if err != nil {
		return fmt.Errorf("must be %s", trainer.SettingRange(u.key))
	}
	*u.p = n
	return nil
}

func (u *uintFlag) String() string { return strconv.FormatUint(*u.p, 10) }
func (u *uintFlag) Type() string   { return "uint" }

// intFlag binds an integer flag to *p, keeping *p (the default
// configuration's value) as its default.
func intFlag(f *pflag.FlagSet, p *int, name, usage string) {
	f.Var(&wholeFlag{p, strings.ReplaceAll(name, "-", "_")}, name, usage)
}

// nameSetting names the setting of a *trainer.SettingError as the user gave
// it: the flag when one was given or when there is no configuration file
// (a flag is then the only way to set it), else the file's key.
func nameSetting(err error, f *pflag.FlagSet, configPath string) error {
	var se *trainer.SettingError
	if !errors.As(err, &se) {
		return err
	}
	flag := strings.ReplaceAll(se.Key, "_", "-")
	fl := f.Lookup(flag)
	switch {
	case fl != nil && (fl.Changed || configPath == ""):
		se.Name = "--" + flag
	case configPath != "":
		return fmt.Errorf("config %s: %w", configPath, err)
	}
	return err
}
