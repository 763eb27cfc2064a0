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

// CPUZMMSplit is what the CPU said: cpuZMMSplit.
func CPUZMMSplit() bool { return cpuZMMSplit() }

// SetZMMSplit sets whether the CPU counts as splitting its zmm FMAs (Zen 4),
// which ocLanesPay weighs; restore puts back what the CPU said.
func SetZMMSplit(split bool) (restore func()) {
	old := zmmSplit.Swap(split)
	return func() { zmmSplit.Store(old) }
}

// ConvOCLanesPay is ocLanesPay for a forward of x (N, C, H, W) by w (M, C,
// KH, KW) under p at vector width vl and tile height mr, on the row path.
func ConvOCLanesPay(x, w []int, p Conv2DParams, vl, mr int) bool {
	g, msg := convGeometry(x, w, p)
	if msg != "" {
		panic(msg)
	}
	return ocLanesPay(&g, vl, mr, true)
}
