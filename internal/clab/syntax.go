package clab

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// checkIfName checks a Linux interface name usable in a node.
func checkIfName(s string) error {
	switch {
	case s == "" || len(s) > 15:
		return errors.New("interface names are 1 to 15 characters")
	case s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\x00"):
		return errors.New("interface names have no '/', ':' or white space")
	case s == "eth0":
		return errors.New("eth0 is containerlab's management interface; start at eth1 or use another name")
	case s == "lo":
		return errors.New("lo is the loopback interface")
	}
	return nil
}

// expandEnv replaces ${NAME}, ${NAME:-default} and ${NAME:=default}; any
// other '$' is kept.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b bytes.Buffer
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated variable reference %q", clip(s[i:]))
		}
		ref := s[i+2 : i+end]
		name, def, hasDef := ref, "", false
		if j := strings.IndexByte(ref, ':'); j >= 0 {
			name, def = ref[:j], ref[j+1:]
			if !strings.HasPrefix(def, "-") && !strings.HasPrefix(def, "=") {
				return "", fmt.Errorf("variable reference ${%s}: want ${NAME}, ${NAME:-default} or ${NAME:=default}", clip(ref))
			}
			def, hasDef = def[1:], true
		}
		if !envNameRE.MatchString(name) {
			return "", fmt.Errorf("variable reference ${%s}: bad name", clip(ref))
		}
		v, ok := lookup(name)
		if (!ok || v == "") && hasDef {
			v = def
		}
		b.WriteString(v)
		s = s[i+end+1:]
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// splitWords splits a command line into words as a POSIX shell would,
// without any expansion: blanks separate words, single quotes keep
// everything, double quotes keep everything but \" \\ \$ and \`, and a
// backslash outside quotes keeps the next character.
func splitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("backslash at the end")
			}
			i++
			if s[i] != '\n' { // backslash-newline joins lines
				w.WriteByte(s[i])
				inWord = true
			}
		case c == 0:
			return nil, errors.New("NUL in command")
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
