package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// ElastiCache IAM authentication (ElastiCache user guide, "Authenticating with IAM"): the
// password of AUTH is a SigV4-presigned GET of http://<cache>/?Action=connect&User=<user> for
// the service "elasticache", without its scheme, valid up to 15 minutes; the user ID must equal
// the user name, lower case; a connection authenticated so is closed after 12 hours.
const (
	iamTokenLifetime = 15 * time.Minute
	iamConnLifetime  = 11 * time.Hour // reconnect (with a fresh token) before ElastiCache's 12 h
)

// emptyPayloadSHA256 is the SHA-256 of an empty body, which a presigned GET signs.
var emptyPayloadSHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

// iamAuth makes the credentials of new Redis connections from the pod's AWS identity (IRSA):
// no password exists anywhere, in Pulumi state, Kubernetes or the environment.
type iamAuth struct {
	user, cache, region string
	creds               aws.CredentialsProvider
	signer              *v4.Signer
	now                 func() time.Time
}

// newIAMAuth loads the AWS identity from the environment (in the cluster, IRSA's
// AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE).
func newIAMAuth(ctx context.Context, user, cache, region string) (*iamAuth, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("REDIS_AUTH=iam: load AWS configuration: %w", err)
	}
	return &iamAuth{user: user, cache: cache, region: region, creds: cfg.Credentials, signer: v4.NewSigner(), now: time.Now}, nil
}

// credentials is go-redis's CredentialsProviderContext: called for every new connection.
func (a *iamAuth) credentials(ctx context.Context) (string, string, error) {
	token, err := a.token(ctx)
	return a.user, token, err
}

func (a *iamAuth) token(ctx context.Context) (string, error) {
	if a.creds == nil {
		return "", errors.New("no AWS credentials to sign the ElastiCache token with")
	}
	creds, err := a.creds.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("AWS credentials for the ElastiCache token: %w", err)
	}
	q := url.Values{"Action": {"connect"}, "User": {a.user}, "X-Amz-Expires": {fmt.Sprint(int(iamTokenLifetime.Seconds()))}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.cache+"/?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	signed, _, err := a.signer.PresignHTTP(ctx, creds, req, emptyPayloadSHA256, "elasticache", a.region, a.now().UTC())
	if err != nil {
		return "", fmt.Errorf("sign the ElastiCache token: %w", err)
	}
	return strings.TrimPrefix(signed, "http://"), nil
}
