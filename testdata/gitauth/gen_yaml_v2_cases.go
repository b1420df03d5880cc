package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	yaml "gopkg.in/yaml.v2"
)

type Case struct {
	Value  string            `json:"value"`
	Labels map[string]string `json:"labels,omitempty"`
	Yaml   string            `json:"yaml"`
}

func main() {
	long := strings.Repeat("x", 90)
	values := []string{
		"plain", "true", "True", "yes", "on", "off", "y", "n", "null", "~", "", "123", "-5", "+7", "0x1F", "0o17", "0b101", "-0b1", "017", "09", "1e3", "1.5", ".5", ".inf", "-.Inf", ".nan", "1_000",
		"1:20", "190:20:30", "1:20.5", "2024-01-02", "2024-1-2", "2024-01-02T10:20:30Z", "2024-01-02T10:20:30+02:00", "2024-01-02 10:20:30", "2024-13-02", "2024-01-02T10:20:30", "12345-01-01",
		"a: b", "a:b", "it's", "#x", "a #x", "a#x", "'q", "\"q", " lead", "trail ", "tab\there", "-", "- x", "-x", "?", "? x", ":x", "---", "...", "--- x", "[x]", "x]", "{a}", "a,b", "&a", "*a", "!t", "|x", "%x", "@x", "`x",
		"line1\nline2\n", "line1\nline2", "\nx", "trailing \nx", "x\n \ny", "crlf\r\n", "é", "\u00a0x", "\u0085", "🙂", "\u2028x", "a\x7fb", "\ufeffx",
		"a\n\n", "\n", "a\n\n\n", " x\ny\n", "x\n  indented\n",
		long + " tail end", long + "  two spaces", "short words " + long, strings.Repeat("word ", 30),
		"'" + long + " " + long + "'", "a: " + long + " " + long, "tab\t" + long + " x y", strings.Repeat("ab ", 40) + "\t",
		"github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
		"<<", "=", "a=b", "<script>", "x & y",
	}
	var out []Case
	for _, v := range values {
		doc := map[string]interface{}{
			"apiVersion": "v1", "kind": "Secret",
			"metadata":   map[string]interface{}{"name": "n", "namespace": "ns"},
			"stringData": map[string]interface{}{"k": v},
		}
		b, err := yaml.Marshal(doc)
		if err != nil {
			panic(err)
		}
		out = append(out, Case{Value: v, Yaml: string(b)})
	}
	labels := map[string]string{"a10": "x", "a9": "y", "a09": "z", "b": "1", "B": "2", "toolkit.fluxcd.io/tenant": "dev-team", "app.kubernetes.io/name": "x", "a": "", "a-b": "v", "a_b": "v", "a.b": "v", "1a": "v", "10a": "v", "2a": "v", "a0": "v", "a00": "v", "a01": "v"}
	lm := map[string]interface{}{}
	for k, v := range labels {
		lm[k] = v
	}
	doc := map[string]interface{}{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]interface{}{"name": "n", "namespace": "ns", "labels": lm},
		"stringData": map[string]interface{}{"password": "p", "username": "u", "identity.pub": "ssh-ed25519 AAAA\n", "known_hosts": "h ssh-ed25519 AAAA", "ca.crt": "c", "bearerToken": "t", "identity": "-----BEGIN-----\nx\n-----END-----\n"},
	}
	b, _ := yaml.Marshal(doc)
	out = append(out, Case{Value: "", Labels: labels, Yaml: string(b)})
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
	fmt.Fprintln(os.Stderr, len(out), "cases")
}
