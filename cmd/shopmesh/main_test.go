package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	none := func(string) string { return "" }
	tests := []struct {
		args    []string
		wantErr error
		wantOut string
	}{
		{[]string{"shopmesh"}, errUsage, "commands:"},
		{[]string{"shopmesh", "launch"}, errUsage, ""},
		{[]string{"shopmesh", "help"}, nil, "run "},
		{[]string{"shopmesh", "run", "extra"}, nil, ""},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tt.args, none, &out)
		switch {
		case tt.args[len(tt.args)-1] == "extra":
			if err == nil || !strings.Contains(err.Error(), "takes no arguments") {
				t.Errorf("%v: err = %v, want 'takes no arguments'", tt.args, err)
			}
		case !errors.Is(err, tt.wantErr):
			t.Errorf("%v: err = %v, want %v", tt.args, err, tt.wantErr)
		}
		if !strings.Contains(out.String(), tt.wantOut) {
			t.Errorf("%v: output %q lacks %q", tt.args, out.String(), tt.wantOut)
		}
	}
}
