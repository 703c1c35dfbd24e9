package mailstore

import "sync"

// DirSyncs shares directory syncs between concurrent writers (group
// commit); the zero value is ready to use: a delivery that linked its file into a directory asks for a
// sync and waits; one sync serves every request made before it started,
// so each caller still returns only once its own link is durable, and
// concurrent deliveries into one mailbox pay for one fsync instead of
// one each.
type DirSyncs struct {
	mu   sync.Mutex
	dirs map[string]*dirSync
}

type dirSync struct {
	running bool
	waiters []chan error
}

// Sync syncs dir with syncDir, sharing the call with concurrent callers
// as above, and returns its error.
func (d *DirSyncs) Sync(dir string, syncDir func(string) error) error {
	ch := make(chan error, 1)
	d.mu.Lock()
	if d.dirs == nil {
		d.dirs = map[string]*dirSync{}
	}
	ds := d.dirs[dir]
	if ds == nil {
		ds = &dirSync{}
		d.dirs[dir] = ds
	}
	ds.waiters = append(ds.waiters, ch)
	if !ds.running {
		ds.running = true
		go d.run(dir, ds, syncDir)
	}
	d.mu.Unlock()
	return <-ch
}

// run syncs dir until no caller waits: each round takes the callers that
// asked before it began.
func (d *DirSyncs) run(dir string, ds *dirSync, syncDir func(string) error) {
	for {
		d.mu.Lock()
		batch := ds.waiters
		ds.waiters = nil
		if len(batch) == 0 {
			ds.running = false
			delete(d.dirs, dir)
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		err := syncDir(dir)
		for _, ch := range batch {
			ch <- err
		}
	}
}
