package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

const redacted = "<redacted>"

// Secret holds a pre-shared key or a password. Every way of printing it
// (fmt verbs, JSON, slog) shows "<redacted>"; only Reveal gives the value.
type Secret struct {
	value  string
	source string // "file /etc/bgpgw/psk" or "env BGPGW_PSK": safe to show
}

// Reveal returns the secret itself, for the adapter that must hand it over.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether a secret was configured.
func (s Secret) IsSet() bool { return s.value != "" }

// Source says where the secret came from, without the secret.
func (s Secret) Source() string { return s.source }

func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return redacted }
func (s Secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s Secret) Equal(o Secret) bool          { return s.value == o.value && s.source == o.source }

// secret reads a secret from KEY_file or KEY_env (at most one of them).
func (o *obj) secret(base string, required bool) Secret {
	fileKey, envKey := base+"_file", base+"_env"
	file, hasFile := o.str(fileKey, false)
	env, hasEnv := o.str(envKey, false)
	switch {
	case hasFile && hasEnv:
		o.d.errorf(o.key(fileKey), "set either %s or %s, not both", fileKey, envKey)
		return Secret{}
	case hasFile:
		return readSecretFile(o, fileKey, file)
	case hasEnv:
		v, ok := os.LookupEnv(env)
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			o.d.errorf(o.key(envKey), "environment variable %s is not set or empty", env)
			return Secret{}
		}
		return Secret{value: v, source: "env " + env}
	case required:
		o.d.errorf(o.key(fileKey), "required (or %s)", envKey)
	}
	return Secret{}
}

func readSecretFile(o *obj, key, path string) Secret {
	if !filepath.IsAbs(path) && o.d.baseDir != "" {
		path = filepath.Join(o.d.baseDir, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		o.d.errorf(o.key(key), "cannot read secret file %s: %v", path, errnoText(err))
		return Secret{}
	}
	if !fi.Mode().IsRegular() {
		o.d.errorf(o.key(key), "secret file %s is not a regular file", path)
		return Secret{}
	}
	if fi.Mode().Perm()&0o002 != 0 {
		o.d.errorf(o.key(key), "secret file %s is writable by everyone (mode %04o); chmod 600 it", path, fi.Mode().Perm())
		return Secret{}
	}
	if fi.Mode().Perm()&0o004 != 0 {
		o.d.warnf(o.key(key), "secret file %s is readable by everyone (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		o.d.errorf(o.key(key), "cannot read secret file %s: %v", path, errnoText(err))
		return Secret{}
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		o.d.errorf(o.key(key), "secret file %s is empty", path)
		return Secret{}
	}
	return Secret{value: v, source: "file " + path}
}

// errnoText strips the path from an *os.PathError, which the caller names itself.
func errnoText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}
