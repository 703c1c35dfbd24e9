package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// mediaType returns the request's Content-Type without parameters, lower-cased.
func mediaType(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if err != nil {
		return ""
	}
	return mt
}

// isJSON tells whether a media type is JSON (application/json or +json).
func isJSON(mt string) bool { return mt == "application/json" || strings.HasSuffix(mt, "+json") }

func errUnsupported(want string) error {
	return &mailcluster.Error{Code: codeUnsupportedMediaType, Message: "The request body must be " + want + "."}
}

// decodeJSON decodes the request body into dst strictly: the body must be
// JSON (by Content-Type), one value, with no member dst does not know.
// Every failure is a client-safe EINVALID (or ETOOLARGE) error.
func decodeJSON(c echo.Context, dst any) error {
	if !isJSON(mediaType(c.Request())) {
		return errUnsupported("JSON (Content-Type: application/json)")
	}
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return mailcluster.Errorf(mailcluster.EINVALID, "The request body must hold exactly one JSON value; there is more after it.")
	}
	return nil
}

// jsonError explains a decoding error without echoing internal text.
func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return mailcluster.Errorf(mailcluster.EINVALID, "The request body is empty; a JSON object is required.")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return mailcluster.Errorf(mailcluster.EINVALID, "The request body is malformed JSON: it ends too early.")
	case errors.As(err, &syn):
		return mailcluster.Errorf(mailcluster.EINVALID, "The request body is malformed JSON at byte %d.", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return mailcluster.Errorf(mailcluster.EINVALID, "The request body must be a JSON object, not %s.", jsonKind(typ.Value))
		}
		return mailcluster.Errorf(mailcluster.EINVALID, "Member %q must be %s, not %s.", typ.Field, goKind(typ), jsonKind(typ.Value))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if n, err := strconv.Unquote(name); err == nil {
			name = n
		}
		if len(name) > 64 {
			name = name[:64]
		}
		return mailcluster.Errorf(mailcluster.EINVALID, "The request body has an unknown member %q.", name)
	}
	return &mailcluster.Error{Code: mailcluster.EINVALID, Message: "The request body is not valid JSON for this operation.", Err: err}
}

func jsonKind(v string) string {
	switch v {
	case "string":
		return "a string"
	case "array":
		return "an array"
	case "object":
		return "an object"
	case "bool":
		return "a boolean"
	case "number":
		return "a number"
	}
	if n, ok := strings.CutPrefix(v, "number "); ok && len(n) <= 32 {
		return "the number " + n
	}
	return "a JSON " + v
}

func goKind(e *json.UnmarshalTypeError) string {
	if e.Type == nil {
		return "of another type"
	}
	switch e.Type.Kind().String() {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	}
	return "of another type"
}

// pathParam returns a path parameter, unescaped (Echo routes on the raw
// path when the request has one, leaving escapes in parameters).
func pathParam(c echo.Context, name string) string {
	v := c.Param(name)
	if c.Request().URL.RawPath != "" {
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
	}
	return v
}

// queryBool reads an optional boolean query parameter.
func queryBool(c echo.Context, name string) (bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, mailcluster.Errorf(mailcluster.EINVALID, "Query parameter %s must be true or false.", name)
	}
	return b, nil
}

// readBody reads a whole (limited) body as text.
func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, &mailcluster.Error{Code: mailcluster.EINVALID, Message: "The request body could not be read.", Err: fmt.Errorf("api: read body: %w", err)}
	}
	return b, nil
}
