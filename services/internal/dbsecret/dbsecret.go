// Package dbsecret reads PostgreSQL credentials at run time from the Secrets Manager secret that
// RDS keeps for a managed master user, so that a rotated password reaches new connections
// without a restart or a redeploy, and no password is in a Kubernetes object.
//
// RDS writes the secret as JSON with "username" and "password" (Amazon RDS User Guide, "Password
// management with Amazon RDS and AWS Secrets Manager") and rotates it with Secrets Manager's
// single-user strategy: the new password is stored as AWSPENDING, set on the database, tested,
// and only then moved to AWSCURRENT (Secrets Manager User Guide, "Rotation by Lambda function":
// createSecret, setSecret, testSecret, finishSecret). A connection attempted between setSecret
// and finishSecret fails with the AWSCURRENT password, so after such a failure the source tries
// AWSPENDING when AWSCURRENT has not changed.
package dbsecret

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// MaxAge is how long credentials are used without asking Secrets Manager again. Rotation is
// normally noticed sooner, at the first authentication failure (Invalidate).
const MaxAge = 10 * time.Minute

// Getter is the one Secrets Manager call the source makes.
type Getter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Source hands out the current user and password of one secret.
type Source struct {
	client   Getter
	secretID string
	now      func() time.Time

	mu      sync.Mutex
	current secretValue // what Credentials returns while fresh
	fetched time.Time
	stale   bool   // the database refused current
	refused string // version id of the value the database refused
}

type secretValue struct {
	version, user, password string
}

// Options configure New; the zero value uses the SDK's defaults (region and credentials from the
// environment: in the cluster, IRSA's AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE).
type Options struct {
	Region   string // AWS_REGION
	Endpoint string // a Secrets Manager endpoint other than AWS's (tests, VPC endpoints with private DNS off)
}

// New returns a source for the secret secretID (its ARN or name).
func New(ctx context.Context, secretID string, o Options) (*Source, error) {
	if secretID == "" {
		return nil, errors.New("database secret: no secret ARN given")
	}
	client, err := NewClient(ctx, o)
	if err != nil {
		return nil, err
	}
	return NewWithClient(client, secretID), nil
}

// NewClient is a Secrets Manager client configured as New configures its own.
func NewClient(ctx context.Context, o Options) (*secretsmanager.Client, error) {
	var load []func(*awsconfig.LoadOptions) error
	if o.Region != "" {
		load = append(load, awsconfig.WithRegion(o.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("database secret: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("database secret: no AWS region: set AWS_REGION")
	}
	return secretsmanager.NewFromConfig(cfg, func(opts *secretsmanager.Options) {
		if o.Endpoint != "" {
			opts.BaseEndpoint = aws.String(o.Endpoint)
		}
	}), nil
}

// NewWithClient returns a source that reads through client.
func NewWithClient(client Getter, secretID string) *Source {
	return &Source{client: client, secretID: secretID, now: time.Now}
}

// Credentials returns the user and password to open a new connection with.
func (s *Source) Credentials(ctx context.Context) (user, password string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current.password != "" && !s.stale && s.now().Sub(s.fetched) < MaxAge {
		return s.current.user, s.current.password, nil
	}
	v, err := s.get(ctx, "AWSCURRENT")
	if err != nil {
		return "", "", err
	}
	if s.stale && v.version == s.refused {
		// Mid-rotation: the database may already have the AWSPENDING password.
		pending, err := s.get(ctx, "AWSPENDING")
		var notFound *types.ResourceNotFoundException
		switch {
		case errors.As(err, &notFound):
			// No rotation under way: the refusal had another cause; keep AWSCURRENT.
		case err != nil:
			return "", "", err
		default:
			// Not cached as current: once rotation finishes AWSCURRENT will say so.
			return pending.user, pending.password, nil
		}
	}
	s.current, s.fetched, s.stale = v, s.now(), false
	return v.user, v.password, nil
}

// Invalidate records that the database refused the credentials last handed out; the next call
// to Credentials asks Secrets Manager again.
func (s *Source) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stale {
		s.stale, s.refused = true, s.current.version
	}
}

func (s *Source) get(ctx context.Context, stage string) (secretValue, error) {
	out, err := s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: aws.String(s.secretID), VersionStage: aws.String(stage),
	})
	if err != nil {
		return secretValue{}, fmt.Errorf("database secret %s (%s): %w", s.secretID, stage, err)
	}
	if out.SecretString == nil {
		return secretValue{}, fmt.Errorf("database secret %s (%s): no SecretString; expected RDS's JSON with username and password", s.secretID, stage)
	}
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal([]byte(*out.SecretString), &body); err != nil || body.Username == "" || body.Password == "" {
		return secretValue{}, fmt.Errorf("database secret %s (%s): expected JSON with username and password, as RDS writes it", s.secretID, stage)
	}
	return secretValue{version: aws.ToString(out.VersionId), user: body.Username, password: body.Password}, nil
}
