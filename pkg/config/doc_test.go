package config

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// docPath is the configuration reference, relative to this package.
const docPath = "../../docs/configuration.md"

// keyHeadingRE matches a reference entry: a level-3 heading that is exactly
// one key path in backticks, "### `tunnels[].inside.local`".
var keyHeadingRE = regexp.MustCompile("(?m)^### `([^`]+)`[ \t]*$")

// TestDocumentationCoversEveryKey keeps docs/configuration.md in step with
// the decoder: one heading per key bgpgw reads, and none for keys it does
// not read.
func TestDocumentationCoversEveryKey(t *testing.T) {
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	documented := map[string]bool{}
	for _, m := range keyHeadingRE.FindAllStringSubmatch(string(data), -1) {
		if documented[m[1]] {
			t.Errorf("%s: key %q is documented twice", docPath, m[1])
		}
		documented[m[1]] = true
	}
	keys := Keys()
	if len(keys) == 0 {
		t.Fatal("config.Keys() is empty")
	}
	var missing, extra []string
	for _, k := range keys {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !slices.Contains(keys, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range missing {
		t.Errorf("%s: missing \"### `%s`\": the decoder reads this key", docPath, k)
	}
	for _, k := range extra {
		t.Errorf("%s: extra \"### `%s`\": the decoder reads no such key", docPath, k)
	}
}

// Level-3 headings are reserved for keys: one that is not exactly
// "### `key.path`" (a typo, a missing backtick, prose) would silently drop
// out of the comparison above.
func TestDocumentationLevel3HeadingsAreKeys(t *testing.T) {
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	level3 := regexp.MustCompile("(?m)^###(?:[^#].*)?$")
	for _, line := range level3.FindAllString(string(data), -1) {
		if !keyHeadingRE.MatchString(line) {
			t.Errorf("%s: heading %q: level-3 headings are for keys only, written exactly \"### `key.path`\"", docPath, line)
		}
	}
}
