package rehearsal

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// The AWS identity every pod gets in the rehearsal, as IRSA gives one in the cluster: the
// stand-ins below accept requests signed with it and nothing else.
const (
	podAccessKey = "AKIAREHEARSALPOD0001"
	podSecretKey = "rehearsal-pod-secret-key-0000000000000000"
	podRegionEnv = "AWS_REGION"
)

// awsEnv is what a pod's AWS SDK reads in the rehearsal instead of IRSA's web identity.
func awsEnv() map[string]string {
	return map[string]string{
		"AWS_ACCESS_KEY_ID": podAccessKey, "AWS_SECRET_ACCESS_KEY": podSecretKey,
		"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
	}
}

// secretsManager stands for the stack's database secrets: the one RDS keeps for its master user
// (RDS User Guide, "Password management with Amazon RDS and AWS Secrets Manager": JSON with
// username and password) and each service's login secret, which the program creates empty and the
// bootstrap Job writes. It speaks the AWS JSON 1.1 protocol (X-Amz-Target
// secretsmanager.GetSecretValue and PutSecretValue; errors as {"__type": …}) to requests signed
// with the pod identity; a secret with no value yet is ResourceNotFoundException, as AWS answers.
type secretsManager struct {
	srv *http.Server
	ln  net.Listener

	mu      sync.Mutex
	secrets map[string]*[2]string // ARN → user, password; nil: no value yet
}

func newSecretsManager(master, user, password string, logins []string) (*secretsManager, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sm := &secretsManager{ln: ln, secrets: map[string]*[2]string{master: {user, password}}}
	for _, arn := range logins {
		sm.secrets[arn] = nil
	}
	sm.srv = &http.Server{Handler: http.HandlerFunc(sm.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = sm.srv.Serve(ln) }()
	return sm, nil
}

func (sm *secretsManager) URL() string  { return "http://" + sm.ln.Addr().String() }
func (sm *secretsManager) Close() error { return sm.srv.Close() }

// value is what secret arn holds.
func (sm *secretsManager) value(arn string) (user, password string, ok bool) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if v := sm.secrets[arn]; v != nil {
		return v[0], v[1], true
	}
	return "", "", false
}

func (sm *secretsManager) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, typ, msg string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="+podAccessKey+"/") || !strings.Contains(auth, "/secretsmanager/aws4_request") {
		fail(http.StatusBadRequest, "UnrecognizedClientException", "the request is not signed with the pod's AWS identity")
		return
	}
	target := r.Header.Get("X-Amz-Target")
	if target != "secretsmanager.GetSecretValue" && target != "secretsmanager.PutSecretValue" {
		fail(http.StatusBadRequest, "AccessDeniedException", "the stack's roles may get and put secret values only")
		return
	}
	var in struct{ SecretId, VersionStage, SecretString string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	sm.mu.Lock()
	v, known := sm.secrets[in.SecretId]
	sm.mu.Unlock()
	if !known {
		fail(http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret: "+in.SecretId)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if target == "secretsmanager.PutSecretValue" {
		var body struct{ Username, Password string }
		if err := json.Unmarshal([]byte(in.SecretString), &body); err != nil || body.Password == "" {
			fail(http.StatusBadRequest, "InvalidRequestException", "SecretString must be JSON with username and password")
			return
		}
		sm.mu.Lock()
		sm.secrets[in.SecretId] = &[2]string{body.Username, body.Password}
		sm.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"ARN": in.SecretId, "Name": in.SecretId, "VersionId": "00000000-0000-4000-8000-000000000002",
			"VersionStages": []string{"AWSCURRENT"}})
		return
	}
	if v == nil || (in.VersionStage != "" && in.VersionStage != "AWSCURRENT") {
		fail(http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: "+in.VersionStage)
		return
	}
	secret, _ := json.Marshal(map[string]string{"username": v[0], "password": v[1]})
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ARN": in.SecretId, "Name": in.SecretId, "VersionId": "00000000-0000-4000-8000-000000000001",
		"SecretString": string(secret), "VersionStages": []string{"AWSCURRENT"},
	})
}

// elastiCache stands for the Valkey replication group with encryption in transit and a user
// group holding one IAM-authenticated user (ElastiCache guide, "Authenticating with IAM"): it
// terminates TLS, accepts a connection only when its first command authenticates as that user
// with a valid token — a SigV4-presigned GET of http://<cache>/?Action=connect&User=<user> for
// the service elasticache, signed with the pod's identity, at most 15 minutes old — and then
// joins it to the real Redis, authenticated as the ACL user made from the declared access
// string, so that Redis itself decides what the user may run. A connection that sends anything
// else first is refused: the user group has no default user.
type elastiCache struct {
	ln             net.Listener
	redisAddr      string
	user, password string // the ACL user in the real Redis
	cache, region  string
	caPEM          []byte

	mu    sync.Mutex
	down  bool // an outage: no connection is accepted, those open are cut
	conns map[net.Conn]bool
}

// Outage cuts every connection and refuses new ones until Restore.
func (ec *elastiCache) Outage() {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	ec.down = true
	for c := range ec.conns {
		c.Close()
	}
}

// Restore ends an outage.
func (ec *elastiCache) Restore() {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	ec.down = false
}

func (ec *elastiCache) track(c net.Conn, add bool) bool {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	if !add {
		delete(ec.conns, c)
		return true
	}
	if ec.down {
		return false
	}
	ec.conns[c] = true
	return true
}

func newElastiCache(redisAddr, user, password, cache, region string) (*elastiCache, error) {
	caPEM, cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	ec := &elastiCache{ln: ln, redisAddr: redisAddr, user: user, password: password, cache: cache, region: region, caPEM: caPEM, conns: map[net.Conn]bool{}}
	go ec.serve()
	return ec, nil
}

func (ec *elastiCache) Addr() string { return ec.ln.Addr().String() }
func (ec *elastiCache) Close() error { return ec.ln.Close() }

func (ec *elastiCache) serve() {
	for {
		c, err := ec.ln.Accept()
		if err != nil {
			return
		}
		go ec.join(c)
	}
}

func (ec *elastiCache) refuse(c net.Conn, why string) {
	fmt.Fprintf(c, "-WRONGPASS %s\r\n", strings.ReplaceAll(why, "\r\n", " "))
}

func (ec *elastiCache) join(c net.Conn) {
	defer c.Close()
	if !ec.track(c, true) {
		return
	}
	defer ec.track(c, false)
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	args, err := readCommand(r)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	// go-redis opens with HELLO 3 AUTH user token …; older clients with AUTH user token.
	at := -1
	switch {
	case len(args) >= 3 && strings.EqualFold(args[0], "AUTH"):
		at = 1
	case len(args) >= 5 && strings.EqualFold(args[0], "HELLO"):
		for i := 1; i+2 < len(args); i++ {
			if strings.EqualFold(args[i], "AUTH") {
				at = i + 1
				break
			}
		}
	}
	if at < 0 {
		fmt.Fprint(c, "-NOAUTH Authentication required.\r\n")
		return
	}
	if err := ec.verify(args[at], args[at+1]); err != nil {
		ec.refuse(c, err.Error())
		return
	}
	args[at+1] = ec.password
	up, err := net.DialTimeout("tcp", ec.redisAddr, 5*time.Second)
	if err != nil {
		fmt.Fprintf(c, "-ERR cache unreachable: %v\r\n", err)
		return
	}
	defer up.Close()
	if _, err := up.Write(encodeCommand(args)); err != nil {
		return
	}
	go func() { _, _ = io.Copy(up, r); up.Close() }() // an outage closes c: the cache's side goes too
	_, _ = io.Copy(c, up)
}

// verify checks an IAM authentication token the way ElastiCache documents it.
func (ec *elastiCache) verify(user, token string) error {
	if user != ec.user {
		return fmt.Errorf("user %q is not in the cache's user group (only %q)", user, ec.user)
	}
	u, err := url.Parse("http://" + token)
	if err != nil {
		return fmt.Errorf("the token is not a presigned URL: %v", err)
	}
	q := u.Query()
	if u.Host != ec.cache || q.Get("Action") != "connect" || q.Get("User") != ec.user {
		return fmt.Errorf("the token is for cache %q, action %q, user %q; want %q, connect, %q", u.Host, q.Get("Action"), q.Get("User"), ec.cache, ec.user)
	}
	signedAt, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return errors.New("the token has no X-Amz-Date")
	}
	expires, _ := strconv.Atoi(q.Get("X-Amz-Expires"))
	if age := time.Since(signedAt); age > time.Duration(expires)*time.Second || expires > 900 || age < -time.Minute {
		return fmt.Errorf("the token, signed at %s for %d s, is not valid now", signedAt, expires)
	}
	// Sign the same request with the pod's identity at the same time: the signatures must agree.
	want := url.Values{"Action": {"connect"}, "User": {ec.user}, "X-Amz-Expires": {q.Get("X-Amz-Expires")}}
	req, _ := http.NewRequest(http.MethodGet, "http://"+ec.cache+"/?"+want.Encode(), nil)
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: podAccessKey, SecretAccessKey: podSecretKey},
		req, emptySHA256, "elasticache", ec.region, signedAt)
	if err != nil {
		return err
	}
	ref, _ := url.Parse(signed)
	if ref.Query().Get("X-Amz-Signature") != q.Get("X-Amz-Signature") {
		return errors.New("the token's signature does not match the pod identity's")
	}
	return nil
}

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "*") {
		return nil, errors.New("not a RESP array")
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 1 || n > 64 {
		return nil, errors.New("bad array length")
	}
	args := make([]string, n)
	for i := range args {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "$") {
			return nil, errors.New("not a bulk string")
		}
		size, err := strconv.Atoi(strings.TrimSpace(line[1:]))
		if err != nil || size < 0 || size > 1<<16 {
			return nil, errors.New("bad bulk length")
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:size])
	}
	return args, nil
}

func encodeCommand(args []string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

// selfSigned makes a certificate for 127.0.0.1 that is its own CA: the gateway trusts it
// through SSL_CERT_FILE, as it trusts Amazon's CA in the cluster.
func selfSigned() ([]byte, tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "rehearsal ElastiCache"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// otlpSink stands for the CloudWatch agent's OTLP/HTTP receiver: it takes what it is sent.
func newOTLPSink() (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr().String(), nil
}
