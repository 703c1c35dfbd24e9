//go:build !linux

package mailstore

import "errors"

// CreateUnnamed is not supported here: deliveries write a named file in
// tmp/.
func (osFS) CreateUnnamed(dir string) (File, error) { return nil, errors.ErrUnsupported }

// LinkUnnamed is not supported here.
func (osFS) LinkUnnamed(f File, newname string) error { return errors.ErrUnsupported }
