package api

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"mailcluster"
)

// settingsFileResponse is the JSON form of one ini file.
type settingsFileResponse struct {
	Name     string               `json:"name"`
	Sections mailcluster.Sections `json:"sections"`
}

type settingsFileListResponse struct {
	Files []string `json:"files"`
}

type settingsFileReplaceRequest struct {
	Name     *string               `json:"name"`
	Sections *mailcluster.Sections `json:"sections"`
}

type settingResponse struct {
	File    string `json:"file"`
	Section string `json:"section"`
	Key     string `json:"key"`
	Value   string `json:"value"`
}

type settingValueRequest struct {
	Value *string `json:"value"`
}

const mimeTextPlain = "text/plain; charset=utf-8"

func registerSettingRoutes(s *Server, g routeGroup) {
	g.add(http.MethodGet, "/settings", s.handleSettingsList)
	g.add(http.MethodGet, "/settings/:file", s.handleSettingsFileGet)
	g.add(http.MethodPut, "/settings/:file", s.handleSettingsFileReplace)
	g.add(http.MethodGet, "/settings/:file/:section/:key", s.handleSettingGet)
	g.add(http.MethodPut, "/settings/:file/:section/:key", s.handleSettingPut)
	g.add(http.MethodDelete, "/settings/:file/:section/:key", s.handleSettingDelete)
}

// handleSettingsList answers GET /api/v1/settings.
func (s *Server) handleSettingsList(c echo.Context) error {
	files, err := s.svc.SettingsFiles(c.Request().Context())
	if err != nil {
		return err
	}
	if files == nil {
		files = []string{}
	}
	return c.JSON(http.StatusOK, settingsFileListResponse{Files: files})
}

// handleSettingsFileGet answers GET /api/v1/settings/{file}, as JSON or,
// when the client prefers text/plain, as ini text.
func (s *Server) handleSettingsFileGet(c echo.Context) error {
	f, err := s.svc.SettingsFile(c.Request().Context(), pathParam(c, "file"))
	if err != nil {
		return err
	}
	return respondSettingsFile(c, f)
}

// handleSettingsFileReplace answers PUT /api/v1/settings/{file}: the body
// is ini text (text/plain) or {"sections":{...}} (application/json).
func (s *Server) handleSettingsFileReplace(c echo.Context) error {
	file := pathParam(c, "file")
	var secs mailcluster.Sections
	switch mt := mediaType(c.Request()); {
	case mt == "text/plain":
		text, err := readBody(c)
		if err != nil {
			return err
		}
		if len(strings.TrimSpace(string(text))) == 0 {
			return mailcluster.Errorf(mailcluster.EINVALID, "The request body is empty; send the whole ini file.")
		}
		if secs, err = mailcluster.ParseIni(file, text); err != nil {
			return err
		}
	case isJSON(mt):
		var in settingsFileReplaceRequest
		if err := decodeJSON(c, &in); err != nil {
			return err
		}
		if in.Sections == nil {
			return mailcluster.Errorf(mailcluster.EINVALID, "Member \"sections\" is required.")
		}
		if in.Name != nil && *in.Name != file {
			return mailcluster.Errorf(mailcluster.EINVALID, "Member \"name\" does not match the file %q named in the path.", file)
		}
		secs = *in.Sections
	default:
		return errUnsupported("ini text (Content-Type: text/plain) or JSON (Content-Type: application/json)")
	}
	f, err := s.svc.ReplaceSettingsFile(c.Request().Context(), file, secs)
	if err != nil {
		return err
	}
	return respondSettingsFile(c, f)
}

func respondSettingsFile(c echo.Context, f *mailcluster.SettingsFile) error {
	if prefersText(c.Request().Header.Get(echo.HeaderAccept)) {
		return c.Blob(http.StatusOK, mimeTextPlain, mailcluster.RenderIni(f.Sections))
	}
	secs := f.Sections
	if secs == nil {
		secs = mailcluster.Sections{}
	}
	return c.JSON(http.StatusOK, settingsFileResponse{Name: f.Name, Sections: secs})
}

// prefersText tells whether an Accept header ranks text/plain above
// application/json (JSON wins ties and is the default).
func prefersText(accept string) bool {
	if accept == "" {
		return false
	}
	return acceptQuality(accept, "text", "plain") > acceptQuality(accept, "application", "json")
}

// acceptQuality returns the q-value the most specific matching media range
// of an Accept header gives to typ/sub (RFC 9110, section 12.5.1).
func acceptQuality(accept, typ, sub string) float64 {
	best, bestSpec := 0.0, -1
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		t, st, _ := strings.Cut(mt, "/")
		spec := -1
		switch {
		case t == typ && st == sub:
			spec = 2
		case t == typ && st == "*":
			spec = 1
		case t == "*" && st == "*":
			spec = 0
		}
		if spec < 0 || spec < bestSpec {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		if spec > bestSpec || q > best {
			best, bestSpec = q, spec
		}
	}
	return best
}

// handleSettingGet answers GET /api/v1/settings/{file}/{section}/{key}.
func (s *Server) handleSettingGet(c echo.Context) error {
	file, section, key := pathParam(c, "file"), pathParam(c, "section"), pathParam(c, "key")
	v, err := s.svc.GetSetting(c.Request().Context(), file, section, key)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, settingResponse{File: file, Section: section, Key: key, Value: v})
}

// handleSettingPut answers PUT /api/v1/settings/{file}/{section}/{key}
// with the body {"value":"..."}.
func (s *Server) handleSettingPut(c echo.Context) error {
	file, section, key := pathParam(c, "file"), pathParam(c, "section"), pathParam(c, "key")
	var in settingValueRequest
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Value == nil {
		return mailcluster.Errorf(mailcluster.EINVALID, "Member \"value\" is required.")
	}
	if err := s.svc.SetSetting(c.Request().Context(), file, section, key, *in.Value); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, settingResponse{File: file, Section: section, Key: key, Value: *in.Value})
}

// handleSettingDelete answers DELETE /api/v1/settings/{file}/{section}/{key}.
func (s *Server) handleSettingDelete(c echo.Context) error {
	file, section, key := pathParam(c, "file"), pathParam(c, "section"), pathParam(c, "key")
	if err := s.svc.DeleteSetting(c.Request().Context(), file, section, key); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
