package cuda

import "fmt"

// ordinal is the index, among the devices this process sees, of the one
// Init opens (SelectDevice).
var ordinal int

// SelectDevice chooses the device Init opens, by its index among the visible
// devices (0 unless chosen): data-parallel ranks on one machine each take
// their own. It must come before Init, or name the device Init opened.
func SelectDevice(i int) error {
	mu.Lock()
	defer mu.Unlock()
	if i < 0 {
		return fmt.Errorf("cuda: device index %d", i)
	}
	if initDone && i != ordinal {
		return fmt.Errorf("cuda: device %d asked after device %d was opened", i, ordinal)
	}
	ordinal = i
	return nil
}

// DeviceCount is the number of devices this process sees, found without
// opening one; an error wrapping ErrNoDevice where the driver sees none.
func DeviceCount() (int, error) {
	if newBackend == nil {
		return 0, ErrNotBuilt
	}
	return newBackend().devices()
}
