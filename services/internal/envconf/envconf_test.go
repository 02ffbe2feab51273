package envconf

import (
	"strings"
	"testing"
	"time"
)

func TestReader(t *testing.T) {
	env := map[string]string{"S": " x ", "I": "7", "D": "250ms", "B": "no", "L": "a, ,b,"}
	r := New(func(k string) string { return env[k] })
	if got := r.String("S", "d"); got != "x" {
		t.Errorf("String = %q", got)
	}
	if got := r.String("MISSING", "d"); got != "d" {
		t.Errorf("String default = %q", got)
	}
	if got := r.Int("I", 1); got != 7 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Duration("D", time.Second); got != 250*time.Millisecond {
		t.Errorf("Duration = %v", got)
	}
	if got := r.Bool("B", true); got {
		t.Errorf("Bool = %v", got)
	}
	if got := r.List("L"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("List = %q", got)
	}
	if err := r.Err(); err != nil {
		t.Errorf("Err = %v", err)
	}
}

func TestReaderNamesEveryBadVariable(t *testing.T) {
	env := map[string]string{"I": "seven", "D": "-1s", "B": "maybe"}
	r := New(func(k string) string { return env[k] })
	r.Int("I", 1)
	r.Duration("D", time.Second)
	r.Bool("B", false)
	err := r.Err()
	if err == nil {
		t.Fatal("Err = nil")
	}
	for _, want := range []string{`I must be a whole number, got "seven"`, "D must be a positive duration", `B must be true or false, got "maybe"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
