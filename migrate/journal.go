package migrate

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"mailcluster/mailstore"
)

// journalName is the file under the new root that records, for each
// account whose mailboxPath was changed, where its mail was before.
const journalName = ".mailcluster-migrate.jsonl"

// journal records, under the new root, each account's old path before
// the account is switched to the new one (JSON lines, appended and synced).
type journal struct {
	path    string
	entries map[string]journalEntry // lower-case address -> its first entry
}

type journalEntry struct {
	Address string `json:"address"`
	From    string `json:"from"`
	To      string `json:"to"`
	Root    string `json:"root,omitempty"` // the root From was below, resolved
}

func openJournal(root string) (*journal, error) {
	j := &journal{path: filepath.Join(root, journalName), entries: map[string]journalEntry{}}
	f, err := os.Open(j.path)
	if errors.Is(err, os.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the journal: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e journalEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Address == "" || e.From == "" {
			continue // a line torn by a crash: its account was not switched yet
		}
		if _, ok := j.entries[strings.ToLower(e.Address)]; !ok {
			j.entries[strings.ToLower(e.Address)] = e
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the journal %s: %w", j.path, err)
	}
	return j, nil
}

// record appends an entry and syncs it. An address already recorded keeps
// its first (oldest) path. root is the root from lies below.
func (j *journal) record(address, from, to, root string) error {
	key := strings.ToLower(address)
	if _, ok := j.entries[key]; ok {
		return nil
	}
	e := journalEntry{Address: address, From: from, To: to, Root: root}
	b, _ := json.Marshal(e)
	f, err := os.OpenFile(j.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if len(j.entries) == 0 {
		if err := mailstore.SyncDir(filepath.Dir(j.path)); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	j.entries[key] = e
	return nil
}

func (j *journal) remove() error {
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the journal: %w", err)
	}
	j.entries = map[string]journalEntry{}
	return nil
}
