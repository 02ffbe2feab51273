package dbsecret_test

import (
	"context"
	"strings"
	"testing"

	"github.com/shopmesh/shopmesh/services/internal/dbsecret"
	"github.com/shopmesh/shopmesh/services/internal/dbsecret/dbsecrettest"
)

// source reads from the fake endpoint through the real SDK client: SigV4 signing, the JSON 1.1
// protocol and error decoding are the SDK's.
func source(t *testing.T, sm *dbsecrettest.SecretsManager, secretID string) *dbsecret.Source {
	t.Helper()
	dbsecrettest.SetCredentials(t)
	s, err := dbsecret.New(context.Background(), secretID, dbsecret.Options{Region: dbsecrettest.Region, Endpoint: sm.URL})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func creds(t *testing.T, s *dbsecret.Source) string {
	t.Helper()
	user, password, err := s.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + password
}

func TestCredentialsFollowRotation(t *testing.T) {
	sm := dbsecrettest.StartSecretsManager(t, "shopmesh", "first")
	s := source(t, sm, dbsecrettest.ARN)

	if got := creds(t, s); got != "shopmesh:first" {
		t.Fatalf("credentials = %q, want shopmesh:first", got)
	}
	creds(t, s)
	if n := sm.Calls.Load(); n != 1 {
		t.Errorf("two connections made %d GetSecretValue calls, want 1 (cached)", n)
	}

	// setSecret has run: the database has the pending password, AWSCURRENT is still the old one.
	sm.BeginRotation("second")
	if got := creds(t, s); got != "shopmesh:first" {
		t.Errorf("before any refusal credentials = %q, want the cached shopmesh:first", got)
	}
	s.Invalidate()
	if got := creds(t, s); got != "shopmesh:second" {
		t.Errorf("after a refusal mid-rotation credentials = %q, want AWSPENDING's shopmesh:second", got)
	}

	sm.FinishRotation()
	s.Invalidate()
	if got := creds(t, s); got != "shopmesh:second" {
		t.Errorf("after rotation credentials = %q, want AWSCURRENT's shopmesh:second", got)
	}
	calls := sm.Calls.Load()
	creds(t, s)
	if sm.Calls.Load() != calls {
		t.Errorf("the new AWSCURRENT is not cached: another GetSecretValue call")
	}
}

func TestRefusalWithoutRotationKeepsCurrent(t *testing.T) {
	sm := dbsecrettest.StartSecretsManager(t, "shopmesh", "only")
	s := source(t, sm, dbsecrettest.ARN)
	creds(t, s)
	s.Invalidate()
	// AWSPENDING does not exist: the SDK decodes ResourceNotFoundException and the source keeps AWSCURRENT.
	if got := creds(t, s); got != "shopmesh:only" {
		t.Errorf("credentials = %q, want shopmesh:only", got)
	}
	if n := sm.Calls.Load(); n != 3 {
		t.Errorf("GetSecretValue calls = %d, want 3 (first read, AWSCURRENT again, AWSPENDING)", n)
	}
}

func TestErrors(t *testing.T) {
	sm := dbsecrettest.StartSecretsManager(t, "shopmesh", "pw")
	tests := []struct {
		name     string
		secretID string
		want     string
	}{
		{"unknown secret", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:other", "ResourceNotFoundException"},
		{"names the secret", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:other", "secret:other (AWSCURRENT)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := source(t, sm, tt.secretID).Credentials(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := dbsecret.New(context.Background(), "", dbsecret.Options{Region: "eu-west-1"}); err == nil {
		t.Error("New with no secret: no error")
	}
}
