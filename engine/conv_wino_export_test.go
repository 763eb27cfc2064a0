package engine

// SetConvWinograd sets when the 3×3 "same" convolutions run by Winograd
// ("off", "auto" or "always") for a test, and returns the function that
// restores the setting.
func SetConvWinograd(mode string) (restore func()) {
	v := map[string]int32{"off": winoOff, "auto": winoAuto, "always": winoAlways}[mode]
	old := convWinograd.Swap(v)
	return func() { convWinograd.Store(old) }
}
