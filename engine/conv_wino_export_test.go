package engine

// SetConvWinograd sets when the 3×3 "same" convolutions run by Winograd
// ("off", "auto", "auto2", "always", or "always2" and "always4" for one
// tiling) for a test, and returns the function that
// restores the setting.
func SetConvWinograd(mode string) (restore func()) {
	v := map[string]int32{"off": winoOff, "auto": winoAuto, "auto2": winoAuto2, "always": winoAlways, "always2": winoAlways2, "always4": winoAlways4}[mode]
	old := convWinograd.Swap(v)
	return func() { convWinograd.Store(old) }
}

// SetConvOCLanes forces the forward's output-channel lanes (oc_gemm):
// "auto", "off" or "always"; restore puts back the previous mode.
func SetConvOCLanes(mode string) (restore func()) {
	v := map[string]int32{"auto": ocAuto, "off": ocOff, "always": ocAlways}[mode]
	old := convOCLanes.Swap(v)
	return func() { convOCLanes.Store(old) }
}
