package xmlapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"mailcluster"
	"mailcluster/service"
	"mailcluster/xmlapi"
)

// iniOf flattens an <IniSettings> answer to "Section/Key=value" lines.
func iniOf(t *testing.T, r *Response, file string) []string {
	t.Helper()
	ini := r.Result().SelectElement("IniSettings")
	if ini == nil || ini.SelectAttrValue("file", "") != file {
		t.Fatalf("no IniSettings file=%q:\n%s", file, r.Body)
	}
	var out []string
	for _, s := range ini.SelectElements("Section") {
		for _, k := range s.SelectElements("Key") {
			out = append(out, s.SelectAttrValue("name", "")+"/"+k.SelectAttrValue("name", "")+"="+k.Text())
		}
	}
	return out
}

func TestGetIniSettings(t *testing.T) {
	e := MustOpenEnv(t)
	ctx := service.SystemContext(context.Background(), "test")
	if err := e.Svc.SetSetting(ctx, "custom", "Alpha", "B", "2"); err != nil {
		t.Fatal(err)
	}
	if err := e.Svc.SetSetting(ctx, "custom", "Alpha", "A", "1 & <one>"); err != nil {
		t.Fatal(err)
	}
	if err := e.Svc.SetSetting(ctx, "custom", "Beta", "C", "3"); err != nil {
		t.Fatal(err)
	}

	t.Run("DefaultFile", func(t *testing.T) {
		got := iniOf(t, e.Call(t, "GetIniSettings", "").MustOK(t), "mailcluster")
		joined := strings.Join(got, "\n")
		for _, want := range []string{"AttachmentLinking/Enabled=No", "Passwords/MinLength=8", "NewAccounts/MailboxPath=$MAILBOXROOT$/$DOMAIN$/$MAILBOX$/"} {
			if !strings.Contains(joined, want) {
				t.Errorf("missing %s in\n%s", want, joined)
			}
		}
		if len(got) != 7 {
			t.Errorf("%d keys, want the 7 defaults:\n%s", len(got), joined)
		}
	})
	t.Run("File", func(t *testing.T) {
		got := strings.Join(iniOf(t, e.Call(t, "GetIniSettings", "<File>custom</File>").MustOK(t), "custom"), ";")
		if got != "Alpha/A=1 & <one>;Alpha/B=2;Beta/C=3" {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("Section", func(t *testing.T) {
		got := strings.Join(iniOf(t, e.Call(t, "GetIniSettings", "<File>custom</File><Section>Alpha</Section>").MustOK(t), "custom"), ";")
		if got != "Alpha/A=1 & <one>;Alpha/B=2" {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("Key", func(t *testing.T) {
		got := strings.Join(iniOf(t, e.Call(t, "GetIniSettings", "<Section>Passwords</Section><Key>MinLength</Key>").MustOK(t), "mailcluster"), ";")
		if got != "Passwords/MinLength=8" {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		for _, params := range []string{
			"<File>nofile</File>",
			"<Section>NoSection</Section>",
			"<Section>Passwords</Section><Key>NoKey</Key>",
		} {
			e.Call(t, "GetIniSettings", params).MustStatus(t, xmlapi.StatusNotFound)
		}
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		msg := e.Call(t, "GetIniSettings", "<Key>MinLength</Key>").MustStatus(t, xmlapi.StatusMissingParameter)
		if !strings.Contains(msg, "Section") {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		e.Call(t, "GetIniSettings", "<File>../etc</File>").MustStatus(t, xmlapi.StatusInvalidParameter)
	})
}

func TestUpdateIniSettings(t *testing.T) {
	e := MustOpenEnv(t)
	ctx := service.SystemContext(context.Background(), "test")
	get := func(file, sec, key string) (string, bool) {
		v, err := e.Svc.GetSetting(ctx, file, sec, key)
		if mailcluster.ErrorCode(err) == mailcluster.ENOTFOUND {
			return "", false
		}
		if err != nil {
			t.Fatal(err)
		}
		return v, true
	}

	t.Run("OK", func(t *testing.T) {
		e.Call(t, "UpdateIniSettings", `
			<Section name="Passwords"><Key name="MinLength">10</Key></Section>
			<Section name="SMTP"><Key name="Banner"> Hello there </Key><Key name="MaxRecipients">100</Key></Section>`).MustOK(t)
		for _, c := range []struct{ sec, key, want string }{
			{"Passwords", "MinLength", "10"}, {"SMTP", "Banner", "Hello there"}, {"SMTP", "MaxRecipients", "100"},
		} {
			if v, ok := get("mailcluster", c.sec, c.key); !ok || v != c.want {
				t.Errorf("[%s] %s = %q, %v; want %q", c.sec, c.key, v, ok, c.want)
			}
		}
	})
	t.Run("SetAndDelete", func(t *testing.T) {
		e.Call(t, "UpdateIniSettings", `<File>mailcluster</File>
			<Section name="SMTP"><Key name="Banner" delete="Yes"/><Key name="Greeting">Hi</Key></Section>`).MustOK(t)
		if _, ok := get("mailcluster", "SMTP", "Banner"); ok {
			t.Error("Banner not deleted")
		}
		if v, _ := get("mailcluster", "SMTP", "Greeting"); v != "Hi" {
			t.Errorf("Greeting %q", v)
		}
		if v, _ := get("mailcluster", "SMTP", "MaxRecipients"); v != "100" {
			t.Errorf("an unnamed key changed: %q", v)
		}
	})
	t.Run("DeleteKeyWithValueRule", func(t *testing.T) {
		e.Call(t, "UpdateIniSettings", `<Section name="Passwords"><Key name="MinLength" delete="Yes"/></Section>`).MustOK(t)
		if _, ok := get("mailcluster", "Passwords", "MinLength"); ok {
			t.Error("MinLength not deleted")
		}
	})
	t.Run("DeleteFalseSets", func(t *testing.T) {
		e.Call(t, "UpdateIniSettings", `<Section name="SMTP"><Key name="Greeting" delete="No">Hello</Key></Section>`).MustOK(t)
		if v, _ := get("mailcluster", "SMTP", "Greeting"); v != "Hello" {
			t.Errorf("Greeting %q", v)
		}
	})
	t.Run("OtherFile", func(t *testing.T) {
		e.Call(t, "UpdateIniSettings", `<File>custom</File><Section name="S"><Key name="K">v</Key></Section>`).MustOK(t)
		if v, ok := get("custom", "S", "K"); !ok || v != "v" {
			t.Errorf("custom [S] K = %q, %v", v, ok)
		}
		r := e.Call(t, "GetIniSettings", "<File>custom</File>").MustOK(t)
		if got := strings.Join(iniOf(t, r, "custom"), ";"); got != "S/K=v" {
			t.Errorf("read back %s", got)
		}
	})
	t.Run("ErrInvalidIsAtomic", func(t *testing.T) {
		before := e.Store.Index()
		msg := e.Call(t, "UpdateIniSettings", `
			<Section name="SMTP"><Key name="Greeting">Changed</Key></Section>
			<Section name="Passwords"><Key name="MinLength">abc</Key></Section>`).MustStatus(t, xmlapi.StatusInvalidParameter)
		if !strings.Contains(msg, "MinLength") {
			t.Errorf("message %q", msg)
		}
		if v, _ := get("mailcluster", "SMTP", "Greeting"); v != "Hello" || e.Store.Index() != before {
			t.Errorf("a refused update was half-applied: Greeting %q", v)
		}
	})
	t.Run("ErrTooLong", func(t *testing.T) {
		e.Call(t, "UpdateIniSettings", `<Section name="SMTP"><Key name="Greeting">`+strings.Repeat("x", mailcluster.MaxSettingValue+1)+`</Key></Section>`).
			MustStatusHTTP(t, xmlapi.StatusTooLarge, http.StatusOK) // an operation's answer is always HTTP 200
	})
	t.Run("ErrMissingParameter", func(t *testing.T) {
		for params, name := range map[string]string{
			``: "Section",
			`<Section><Key name="A">1</Key></Section>`: "Section/@name",
			`<Section name="S"/>`:                      "Key",
			`<Section name="S"><Key>1</Key></Section>`: "Key/@name",
		} {
			msg := e.Call(t, "UpdateIniSettings", params).MustStatus(t, xmlapi.StatusMissingParameter)
			if !strings.Contains(msg, name) {
				t.Errorf("message %q does not name %s", msg, name)
			}
		}
	})
	t.Run("ErrInvalidParameter", func(t *testing.T) {
		for _, params := range []string{
			`<Section name="S"><Key name="A">1</Key><Key name="A">2</Key></Section>`,
			`<Section name="S"><Key name="A" delete="sometimes"/></Section>`,
			`<Section name="bad name"><Key name="A">1</Key></Section>`,
			`<File>bad/file</File><Section name="S"><Key name="A">1</Key></Section>`,
		} {
			e.Call(t, "UpdateIniSettings", params).MustStatus(t, xmlapi.StatusInvalidParameter)
		}
	})
}
