package xmlapi_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"mailcluster/xmlapi"
)

// TestDocsListEveryOperation checks that docs/xml-api.md has a section
// with a request (its <Parameters>) and an answer (its <Result>, or the
// operation whose answer it shares) for every operation the handler
// dispatches,
// and that the README's table names it: a new operation cannot ship
// undocumented.
func TestDocsListEveryOperation(t *testing.T) {
	// An answer shaped like another operation's may say so instead of
	// repeating it: "Result: the new list, as GetListInfo answers it".
	answersAsAnother := regexp.MustCompile(`Result: the [\w ]+, as [^.]*\b(Get|Create)[A-Z]\w+`)
	docs, err := os.ReadFile("../docs/xml-api.md")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// A section runs from its heading to the next heading of any level.
	headings := regexp.MustCompile(`(?m)^#{2,4} (\w+)\s*$`)
	locs := headings.FindAllSubmatchIndex(docs, -1)
	sections := map[string]string{}
	for i, loc := range locs {
		end := len(docs)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		sections[string(docs[loc[2]:loc[3]])] = string(docs[loc[1]:end])
	}
	_, table, _ := strings.Cut(string(readme), "\n## XML-API\n")
	table, _, _ = strings.Cut(table, "\n## ")
	for op := range xmlapi.WriteOperations {
		sec, ok := sections[op]
		if !ok {
			t.Errorf("docs/xml-api.md has no section for %s", op)
		} else {
			if !strings.Contains(sec, "<Parameters") && !strings.Contains(sec, "No parameters") {
				t.Errorf("docs/xml-api.md's section %s has no request example", op)
			}
			if !strings.Contains(sec, "<Result") && !answersAsAnother.MatchString(sec) {
				t.Errorf("docs/xml-api.md's section %s has no answer example", op)
			}
		}
		if !regexp.MustCompile(`\b` + op + `\b`).MatchString(table) {
			t.Errorf("README.md's XML-API section does not name %s", op)
		}
	}
}
