package openapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"mailcluster/openapi"
)

// TestAddressSchemas checks the schemas of aliases, mailing lists and
// groups against what clients send and the API answers.
func TestAddressSchemas(t *testing.T) {
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/api/v1/domains/{domain}/aliases", "/api/v1/domains/{domain}/aliases/{name}",
		"/api/v1/domains/{domain}/lists", "/api/v1/domains/{domain}/lists/{name}", "/api/v1/domains/{domain}/lists/{name}/members",
		"/api/v1/domains/{domain}/groups", "/api/v1/domains/{domain}/groups/{name}", "/api/v1/domains/{domain}/groups/{name}/members"} {
		if doc.Paths.Find(p) == nil {
			t.Errorf("path %s is missing", p)
		}
	}
	alias := `{"address":"sales@example.com","domain":"example.com","name":"sales","target":"frank@example.com",` +
		`"createdAt":"2025-01-02T03:04:05Z","updatedAt":"2025-01-02T03:04:05Z"}`
	list := `{"address":"team@example.com","domain":"example.com","name":"team","description":"","policy":"members",` +
		`"replyTo":"sender","owner":"","memberCount":0,"createdAt":"2025-01-02T03:04:05Z","updatedAt":"2025-01-02T03:04:05Z"}`
	group := `{"domain":"example.com","name":"staff","description":"","quotaBytes":0,"quotaMessages":0,"memberCount":0,` +
		`"createdAt":"2025-01-02T03:04:05Z","updatedAt":"2025-01-02T03:04:05Z"}`
	tests := []struct {
		name, schema, json string
		ok                 bool
	}{
		{"OKAlias", "Alias", alias, true},
		{"ErrAliasUnknown", "Alias", strings.TrimSuffix(alias, "}") + `,"password":"x"}`, false},
		{"OKAliasPage", "AliasPage", `{"aliases":[` + alias + `],"nextCursor":""}`, true},
		{"OKAliasCreate", "AliasCreate", `{"name":"sales","target":"frank@example.com"}`, true},
		{"ErrAliasCreateNoTarget", "AliasCreate", `{"name":"sales"}`, false},
		{"ErrAliasUpdateEmpty", "AliasUpdate", `{}`, false},
		{"OKList", "MailingList", list, true},
		{"OKListDeleting", "MailingList", strings.TrimSuffix(list, "}") + `,"deleting":true}`, true},
		{"ErrListPolicy", "MailingList", strings.Replace(list, `"members"`, `"nobody"`, 1), false},
		{"OKListCreate", "MailingListCreate", `{"name":"team","policy":"moderated","owner":"a@example.com","members":[{"address":"a@example.com"},{"group":"staff"}]}`, true},
		{"ErrListMemberBoth", "MailingListCreate", `{"name":"team","members":[{"address":"a@example.com","group":"staff"}]}`, false},
		{"ErrListMemberNone", "MailingListCreate", `{"name":"team","members":[{}]}`, false},
		{"ErrListMemberString", "MailingListCreate", `{"name":"team","members":["a@example.com"]}`, false},
		{"ErrListTooMany", "MailingListCreate", `{"name":"team","members":[` + strings.Repeat(`{"group":"g"},`, 120) + `{"group":"g"}]}`, false},
		{"OKListUpdate", "MailingListUpdate", `{"owner":"","addMembers":[{"group":"staff"}],"removeMembers":[{"address":"a@example.com"}]}`, true},
		{"ErrListUpdateName", "MailingListUpdate", `{"name":"other"}`, false},
		{"OKListMembers", "MailingListMemberPage", `{"members":[{"address":"a@example.com"},{"group":"staff"}],"nextCursor":"staff"}`, true},
		{"OKGroup", "Group", group, true},
		{"OKGroupCreate", "GroupCreate", `{"name":"staff","quotaBytes":1024,"members":["alice","bob@example.com"]}`, true},
		{"ErrGroupQuota", "GroupCreate", `{"name":"staff","quotaBytes":-1}`, false},
		{"OKGroupUpdate", "GroupUpdate", `{"quotaMessages":0,"addMembers":["carol"],"removeMembers":["bob"]}`, true},
		{"OKGroupMembers", "GroupMemberPage", `{"members":["a@example.com"],"nextCursor":""}`, true},
		{"OKAccountCreate", "AccountCreate", `{"mailbox":"dave","aliases":["info"],"lists":["team"],"groups":["staff"]}`, true},
		{"OKAccountUpdate", "AccountUpdate", `{"addAliases":["a"],"removeAliases":["b"],"addLists":["l"],"removeLists":["m"],"addGroups":["g"],"removeGroups":["h"]}`, true},
		{"ErrAccountUpdateAliases", "AccountUpdate", `{"aliases":["a"]}`, false},
		{"OKDomainUpdate", "DomainUpdate", `{"postmaster":""}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := doc.Components.Schemas[tt.schema]
			if s == nil {
				t.Fatalf("schema %s is missing", tt.schema)
			}
			var v any
			if err := json.Unmarshal([]byte(tt.json), &v); err != nil {
				t.Fatal(err)
			}
			err := s.Value.VisitJSON(v)
			if (err == nil) != tt.ok {
				t.Errorf("VisitJSON = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	// Every new schema carries an example that fits it (Load validates
	// examples against their schemas).
	for _, name := range []string{"AliasCreate", "AliasUpdate", "MailingListCreate", "MailingListUpdate", "GroupCreate", "GroupUpdate",
		"MailingListMembers", "GroupMembers", "AccountAliases", "DomainUpdate"} {
		if s := doc.Components.Schemas[name]; s == nil || s.Value.Example == nil {
			t.Errorf("schema %s has no example", name)
		}
	}
}
