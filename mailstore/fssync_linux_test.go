package mailstore_test

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"mailcluster/mailstore"
)

func TestWholeSyncType(t *testing.T) {
	for _, tc := range []struct {
		name  string
		magic int64
		want  bool
	}{
		{"ext4", 0xEF53, true},
		{"XFS", 0x58465342, true},
		{"NFS", 0x6969, false},
		{"FUSE", 0x65735546, false},
		{"tmpfs", 0x01021994, false},
		{"btrfs", 0x9123683E, false},
		{"CIFS", 0xFF534D42, false},
	} {
		if got := mailstore.WholeSyncType(tc.magic); got != tc.want {
			t.Errorf("%s: WholeSyncType(%#x) = %v, want %v", tc.name, tc.magic, got, tc.want)
		}
	}
}

// The os file system names a directory's file system by its device,
// syncs it whole where its type allows, and reports a file's writes.
func TestOSFSFileSystemSync(t *testing.T) {
	w, ok := mailstore.OSFS.(mailstore.FileSystemSyncer)
	if !ok {
		t.Fatal("the os file system cannot sync a file system whole on Linux")
	}
	dir := t.TempDir()
	var st unix.Stat_t
	var sf unix.Statfs_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(dir, &sf); err != nil {
		t.Fatal(err)
	}
	id, whole, err := w.FileSystem(dir)
	if err != nil || id != uint64(st.Dev) || whole != mailstore.WholeSyncType(int64(sf.Type)) {
		t.Fatalf("FileSystem(%s) = %d, %v, %v; want device %d, %v", dir, id, whole, err, st.Dev, mailstore.WholeSyncType(int64(sf.Type)))
	}
	if _, _, err := w.FileSystem(filepath.Join(dir, "missing")); err == nil {
		t.Error("FileSystem of a missing directory: no error")
	}
	f, err := mailstore.OSFS.CreateTemp(dir, "msg-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.SyncFileSystem(id, dir); err != nil {
		t.Fatalf("SyncFileSystem: %v", err)
	}
	if err := w.Written(f); err != nil {
		t.Fatalf("Written: %v", err)
	}
	// A directory that is not on the file system named is refused.
	other := uint64(st.Dev) + 1
	if err := w.SyncFileSystem(other, t.TempDir()); err == nil {
		t.Error("SyncFileSystem of a directory on another device: no error")
	}
	if err := w.Written(nil); err == nil {
		t.Error("Written of no os file: no error")
	}
	if !whole {
		t.Logf("%s is on a file system of type %#x: deliveries there sync file by file", dir, sf.Type)
	}
}
