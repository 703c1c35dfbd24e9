package api

import (
	"context"
	"strconv"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// The paged reads of aliases, mailing lists, groups and their members:
// GET .../aliases, .../lists, .../groups and .../members take the query
// parameters limit and cursor and answer a page with nextCursor.

// maxMemberCursorLen bounds the cursor of member pages, whose entries are
// full addresses.
const maxMemberCursorLen = 320

// pageQuery reads the limit (1-1000; 0 when absent: the service's
// default) and cursor query parameters of a paged read.
func pageQuery(c echo.Context, maxCursor int) (cursor string, limit int, err error) {
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return "", 0, mailcluster.Errorf(mailcluster.EINVALID, "Query parameter limit must be a number from 1 to 1000.")
		}
		limit = n
	}
	cursor = c.QueryParam("cursor")
	if len(cursor) > maxCursor {
		return "", 0, mailcluster.Errorf(mailcluster.EINVALID, "Query parameter cursor is longer than %d characters.", maxCursor)
	}
	return cursor, limit, nil
}

// domainPage answers the paged read of a domain's records (GET
// /api/v1/domains/{domain}/...) with find, converting them with conv.
func domainPage[T, R any](c echo.Context, find func(ctx context.Context, domain, cursor string, limit int) ([]T, string, error),
	conv func(T) R) ([]R, string, error) {
	return findPage(c, maxCursorLen, func(ctx context.Context, cursor string, limit int) ([]T, string, error) {
		return find(ctx, pathParam(c, "domain"), cursor, limit)
	}, conv)
}

// memberPage answers the paged read of the members of a list or a group
// (GET /api/v1/domains/{domain}/.../{name}/members) with find, converting
// them with conv.
func memberPage[T, R any](c echo.Context, find func(ctx context.Context, domain, name, cursor string, limit int) ([]T, string, error),
	conv func(T) R) ([]R, string, error) {
	return findPage(c, maxMemberCursorLen, func(ctx context.Context, cursor string, limit int) ([]T, string, error) {
		return find(ctx, pathParam(c, "domain"), pathParam(c, "name"), cursor, limit)
	}, conv)
}

// findPage answers the page query of a paged read (cursors of at most
// maxCursor bytes): it asks find for the page and returns its records
// converted by conv (never nil) and the next cursor.
func findPage[T, R any](c echo.Context, maxCursor int, find func(ctx context.Context, cursor string, limit int) ([]T, string, error),
	conv func(T) R) ([]R, string, error) {
	cursor, limit, err := pageQuery(c, maxCursor)
	if err != nil {
		return nil, "", err
	}
	page, next, err := find(c.Request().Context(), cursor, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]R, 0, len(page))
	for _, v := range page {
		out = append(out, conv(v))
	}
	return out, next, nil
}
