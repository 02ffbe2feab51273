// Package dbsecrettest gives tests a Secrets Manager endpoint that holds one secret with
// AWSCURRENT and AWSPENDING versions, speaking the wire protocol the AWS SDK uses, and a
// PostgreSQL role whose password the server really checks.
//
// The endpoint follows the Secrets Manager API reference for GetSecretValue (request SecretId,
// VersionStage; response ARN, Name, VersionId, SecretString, VersionStages) over the AWS JSON 1.1
// protocol (Smithy: POST /, X-Amz-Target "secretsmanager.GetSecretValue", errors as
// {"__type": …}), and refuses requests that are not SigV4-signed for secretsmanager.
package dbsecrettest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// ARN is the secret's ARN.
const ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-test-AbCdEf"

// SecretsManager is the fake endpoint.
type SecretsManager struct {
	URL   string
	Calls atomic.Int64 // GetSecretValue requests served

	mu      sync.Mutex
	current version
	pending *version
	n       int
	// others are further secrets by ARN (AddSecret), written with PutSecretValue; nil: none yet.
	others map[string]*version
}

// AddSecret adds a secret with no value yet, as Pulumi creates one, that PutSecretValue writes
// and GetSecretValue then reads.
func (sm *SecretsManager) AddSecret(arn string) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.others == nil {
		sm.others = map[string]*version{}
	}
	sm.others[arn] = nil
}

// Value is what secret arn holds (AWSCURRENT): its user and password, or ok false.
func (sm *SecretsManager) Value(arn string) (user, password string, ok bool) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if v := sm.others[arn]; v != nil {
		return v.user, v.password, true
	}
	return "", "", false
}

type version struct{ id, user, password string }

// StartSecretsManager serves a secret whose AWSCURRENT is user/password.
func StartSecretsManager(t testing.TB, user, password string) *SecretsManager {
	t.Helper()
	sm := &SecretsManager{}
	sm.current = sm.next(user, password)
	srv := httptest.NewServer(http.HandlerFunc(sm.serve))
	t.Cleanup(srv.Close)
	sm.URL = srv.URL
	return sm
}

func (sm *SecretsManager) next(user, password string) version {
	sm.n++
	return version{id: fmt.Sprintf("00000000-0000-4000-8000-%012d", sm.n), user: user, password: password}
}

// BeginRotation stores password as AWSPENDING (the rotation's createSecret step).
func (sm *SecretsManager) BeginRotation(password string) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	v := sm.next(sm.current.user, password)
	sm.pending = &v
}

// FinishRotation moves AWSCURRENT to the pending version (finishSecret).
func (sm *SecretsManager) FinishRotation() {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.pending != nil {
		sm.current, sm.pending = *sm.pending, nil
	}
}

func (sm *SecretsManager) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, typ, msg string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-Errortype", typ)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || (target != "secretsmanager.GetSecretValue" && target != "secretsmanager.PutSecretValue") {
		fail(400, "InvalidRequestException", "only GetSecretValue and PutSecretValue are served here")
		return
	}
	if auth := r.Header.Get("Authorization"); !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") || !strings.Contains(auth, "/secretsmanager/aws4_request") {
		fail(400, "IncompleteSignature", "request is not SigV4-signed for secretsmanager")
		return
	}
	var in struct{ SecretId, VersionStage, SecretString string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(400, "InvalidRequestException", err.Error())
		return
	}
	sm.Calls.Add(1)
	sm.mu.Lock()
	other, isOther := sm.others[in.SecretId]
	sm.mu.Unlock()
	if target == "secretsmanager.PutSecretValue" || isOther {
		sm.serveOther(w, target, in.SecretId, in.SecretString, other, isOther, fail)
		return
	}
	sm.mu.Lock()
	v, stage := sm.current, in.VersionStage
	if stage == "" {
		stage = "AWSCURRENT"
	}
	if stage == "AWSPENDING" {
		if sm.pending == nil {
			sm.mu.Unlock()
			fail(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: AWSPENDING")
			return
		}
		v = *sm.pending
	}
	sm.mu.Unlock()
	if in.SecretId != ARN || (stage != "AWSCURRENT" && stage != "AWSPENDING") {
		fail(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	secret, _ := json.Marshal(map[string]string{"username": v.user, "password": v.password})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ARN": ARN, "Name": "rds!db-test", "VersionId": v.id, "SecretString": string(secret),
		"VersionStages": []string{stage}, "CreatedDate": 1.7e9,
	})
}

// serveOther answers for a secret added with AddSecret: PutSecretValue stores a new AWSCURRENT,
// GetSecretValue reads it (ResourceNotFoundException while it has none, as AWS answers).
func (sm *SecretsManager) serveOther(w http.ResponseWriter, target, arn, value string, v *version, known bool, fail func(int, string, string)) {
	if !known {
		fail(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if target == "secretsmanager.PutSecretValue" {
		var body struct{ Username, Password string }
		if err := json.Unmarshal([]byte(value), &body); err != nil {
			fail(400, "InvalidRequestException", "SecretString: "+err.Error())
			return
		}
		sm.mu.Lock()
		nv := sm.next(body.Username, body.Password)
		sm.others[arn] = &nv
		sm.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"ARN": arn, "Name": arn, "VersionId": nv.id, "VersionStages": []string{"AWSCURRENT"}})
		return
	}
	if v == nil {
		fail(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT")
		return
	}
	secret, _ := json.Marshal(map[string]string{"username": v.user, "password": v.password})
	_ = json.NewEncoder(w).Encode(map[string]any{"ARN": arn, "Name": arn, "VersionId": v.id, "SecretString": string(secret),
		"VersionStages": []string{"AWSCURRENT"}, "CreatedDate": 1.7e9})
}

// Region is the secret's region.
const Region = "eu-west-1"

// Env is the service configuration that reads the secret from sm.
func (sm *SecretsManager) Env() map[string]string {
	return map[string]string{"DATABASE_SECRET_ARN": ARN, "AWS_REGION": Region, "AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.URL}
}

// SetCredentials gives the AWS SDK static credentials for the rest of the test, through the
// process environment it reads them from (as it reads IRSA's in the cluster), and hides any
// shared config or credentials file of the machine.
func SetCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
}
