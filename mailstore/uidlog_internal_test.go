package mailstore

import (
	"fmt"
	"testing"
)

// applyLog applies only the lines that extend the map: of its
// UIDVALIDITY, not below its UIDNEXT (lines a snapshot already folded in,
// left by a crash before the log was emptied), with a name it does not
// hold, complete and well formed; and it does not change the map given.
func TestApplyLog(t *testing.T) {
	base := newUIDMap(7)
	for _, k := range []string{"1.M1P1.a", "1.M2P1.b", "1.M3P1.c"} {
		base.add(k)
	}
	// UID 3 was expunged after the fold: its line must not bring it back.
	base.remove(3)
	data := []byte("7 1 1.M1P1.a\n" + // folded already
		"7 3 1.M3P1.c\n" + // folded, then expunged
		"6 4 1.M4P1.old\n" + // another UIDVALIDITY
		"7 4 1.M4P1.d\n" +
		"garbage\n" +
		"7 4 1.M5P1.again\n" + // below UIDNEXT by now
		"7 6 1.M6P1.f\n" + // a gap: UID 5 was never durable
		"7 7 1.M6P1.f\n" + // a name held already
		"7 8 1.M8P1.cut") // cut short
	m, used, lines := applyLog(base, data, false)
	if want := int64(len(data) - len("7 8 1.M8P1.cut")); used != want || lines != 8 {
		t.Fatalf("used %d bytes in %d lines, want %d in 8", used, lines, want)
	}
	if got := fmt.Sprintf("%v %d %s %s", m.uids, m.next, m.key[4], m.key[6]); got != "[1 2 4 6] 7 1.M4P1.d 1.M6P1.f" {
		t.Fatalf("map after the log: %s", got)
	}
	if fmt.Sprint(base.uids, base.next) != "[1 2] 4" {
		t.Fatalf("the map given changed: %v %d", base.uids, base.next)
	}
	if m2, _, _ := applyLog(base, []byte("7 2 1.M2P1.b\n"), false); m2 != base {
		t.Fatal("a log of nothing new cloned the map")
	}
}
