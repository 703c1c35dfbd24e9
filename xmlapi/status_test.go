package xmlapi

import (
	"fmt"
	"testing"
)

// TestStatusValue pins the rendering of HRESULT values to the classic
// 0x%08X, for every status and the edges.
func TestStatusValue(t *testing.T) {
	values := []uint32{0, 1, 0xF, 0x10, 0xABCDEF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF}
	for _, s := range statuses {
		values = append(values, s.Value)
	}
	for _, v := range values {
		if got, want := (status{Value: v}).value(), fmt.Sprintf("0x%08X", v); got != want {
			t.Errorf("value(%d) = %s, want %s", v, got, want)
		}
	}
}
