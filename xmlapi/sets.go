package xmlapi

import (
	"context"
	"strconv"

	"github.com/beevik/etree"

	"mailcluster"
)

// What the operations of aliases, mailing lists and groups share: reading
// every page of a paged service read into one element, decoding the
// entries to add and remove, and the create and update operations of a
// list or group.

// pageSize is the page the list operations read from the service; they
// answer every page.
const pageSize = 1000

// addPaged appends <tag count="N"> to parent with an element per record
// of a paged service read (find, from cursor "" to the end), which add
// appends.
func addPaged[T any](parent *etree.Element, tag string, find func(cursor string, limit int) ([]T, string, error), add func(*etree.Element, T)) error {
	e := etree.NewElement(tag)
	cursor := ""
	for {
		page, next, err := find(cursor, pageSize)
		if err != nil {
			return err
		}
		for _, v := range page {
			add(e, v)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	e.CreateAttr("count", strconv.Itoa(len(e.ChildElements())))
	parent.AddChild(e)
	return nil
}

// readMembers decodes <Members><Member>: each entry, read by member from
// its element and text, goes to add, or with action="remove" to remove.
func readMembers[M any](p params, add, remove *[]M, member func(c *etree.Element, text string) (M, error)) error {
	return p.walk("Members", "Member", func(c *etree.Element, text string, rm bool) error {
		m, err := member(c, text)
		if err != nil {
			return err
		}
		if rm {
			*remove = append(*remove, m)
		} else {
			*add = append(*add, m)
		}
		return nil
	})
}

// errNothingToRemove refuses entries with action="remove" at path in the
// request of a create: the new thing (what) has nothing to remove; op is
// the operation that removes.
func errNothingToRemove(path, what, op string) error {
	return mailcluster.Errorf(mailcluster.EINVALID,
		"Parameter %s: a new %s has nothing to remove (action remove is for %s); nothing was changed.", path, what, op)
}

// setRequest is how the operations of one kind of member set (mailing
// lists, groups) read a request and answer: the name the request gives,
// its fields (F) and the element GetListInfo or GetGroupInfo answers for
// a set (R).
type setRequest[F, R any] struct {
	name   func(params) (domain, name string, err error)
	fields func(params) (F, error)
	answer func(h *Handler, ctx context.Context, parent *etree.Element, r R) error
}

// write answers a create or an update: it decodes the name and the
// fields, makes the change with do and answers the set as the Info
// operation does.
func (k setRequest[F, R]) write(ctx context.Context, h *Handler, p params, result *etree.Element,
	do func(domain, name string, f F) (R, error)) error {
	domain, name, err := k.name(p)
	if err != nil {
		return err
	}
	f, err := k.fields(p)
	if err != nil {
		return err
	}
	r, err := do(domain, name, f)
	if err != nil {
		return err
	}
	return k.answer(h, ctx, result, r)
}

// delete answers a deletion: it decodes the name and deletes with del.
func (k setRequest[F, R]) delete(ctx context.Context, p params, del func(ctx context.Context, domain, name string) error) error {
	domain, name, err := k.name(p)
	if err != nil {
		return err
	}
	return del(ctx, domain, name)
}

// info answers the Info operation with the set find returns.
func (k setRequest[F, R]) info(ctx context.Context, h *Handler, p params, result *etree.Element,
	find func(ctx context.Context, domain, name string) (R, error)) error {
	domain, name, err := k.name(p)
	if err != nil {
		return err
	}
	r, err := find(ctx, domain, name)
	if err != nil {
		return err
	}
	return k.answer(h, ctx, result, r)
}
