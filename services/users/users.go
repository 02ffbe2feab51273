// Package users is the users service: registration, login, profiles, and the issuing of the
// platform's access tokens with their public keys published as a JWKS.
package users

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/fault"
)

// User is a registered account. PasswordHash never leaves this package's stores.
type User struct {
	ID           uuid.UUID
	Email        string // lower-cased; unique
	Name         string
	PasswordHash string
	Roles        []string
	CreatedAt    time.Time
}

// Errors the service reports.
var (
	ErrEmailTaken     = fault.New(fault.ErrConflict, "a user with this email is already registered")
	ErrBadCredentials = fault.New(fault.ErrUnauthenticated, "email or password is incorrect")
	ErrUserNotFound   = fault.New(fault.ErrNotFound, "user not found")
)

// Store keeps users. ByEmail and ByID return ErrUserNotFound when there is none; Create
// returns ErrEmailTaken for an email already in use.
type Store interface {
	Create(ctx context.Context, u User) error
	ByEmail(ctx context.Context, email string) (User, error)
	ByID(ctx context.Context, id uuid.UUID) (User, error)

	// The failure log of LoginPolicy, keyed by loginKey.
	LoginState(ctx context.Context, key string, now time.Time, p LoginPolicy) (LoginState, error)
	RecordLoginFailure(ctx context.Context, key string, now time.Time, p LoginPolicy) (LoginState, error)
	ClearLoginFailures(ctx context.Context, key string) error
	PruneLoginFailures(ctx context.Context, before, now time.Time) (int64, error)
}

// Limits bound the password work one instance does at a time, and the guessing one address
// gets.
type Limits struct {
	PasswordChecks int           // argon2id computations at once
	PasswordWait   time.Duration // how long a login or sign-up waits for one before 503
	Login          LoginPolicy
}

// TokenIssuer signs access tokens.
type TokenIssuer interface {
	Sign(subject string, roles []string) (string, error)
	TTL() time.Duration
}

// Service holds the rules of registration and login.
type Service struct {
	store  Store
	tokens TokenIssuer
	// dummyHash is checked when the email is unknown, so that a login takes as long whether
	// or not the account exists.
	dummyHash string
	gate      *passwordGate
	login     LoginPolicy
	now       func() time.Time
}

// NewService returns a service over store that issues tokens with tokens.
func NewService(store Store, tokens TokenIssuer, limits Limits) (*Service, error) {
	if limits.PasswordChecks < 1 || limits.PasswordWait <= 0 || limits.Login.MaxFailures < 1 ||
		limits.Login.Window <= 0 || limits.Login.Lock <= 0 {
		return nil, fmt.Errorf("users: invalid limits %+v", limits)
	}
	dummy, err := hashPassword(uuid.NewString())
	if err != nil {
		return nil, err
	}
	return &Service{store: store, tokens: tokens, dummyHash: dummy, gate: newPasswordGate(limits.PasswordChecks, limits.PasswordWait),
		login: limits.Login, now: time.Now}, nil
}

// Registration is what a new user sends.
type Registration struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// Limits on input sizes.
const (
	MinPasswordLen = 8
	maxPasswordLen = 256
	maxNameLen     = 200
	maxEmailLen    = 254
)

// Validate names every invalid field.
func (r *Registration) Validate() error {
	var v fault.Validation
	r.Email = strings.TrimSpace(r.Email)
	r.Name = strings.TrimSpace(r.Name)
	switch {
	case r.Email == "":
		v.Add("email", "is required")
	case len(r.Email) > maxEmailLen || !validEmail(r.Email):
		v.Add("email", "must be a valid email address such as ada@example.com")
	}
	switch n := utf8.RuneCountInString(r.Password); {
	case r.Password == "":
		v.Add("password", "is required")
	case n < MinPasswordLen:
		v.Add("password", fmt.Sprintf("must be at least %d characters", MinPasswordLen))
	case n > maxPasswordLen:
		v.Add("password", fmt.Sprintf("must be at most %d characters", maxPasswordLen))
	}
	v.Check(r.Name != "", "name", "is required")
	v.Check(utf8.RuneCountInString(r.Name) <= maxNameLen, "name", fmt.Sprintf("must be at most %d characters", maxNameLen))
	return v.Err()
}

func validEmail(s string) bool {
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s {
		return false
	}
	_, domain, _ := strings.Cut(s, "@")
	return strings.Contains(domain, ".") && !strings.HasSuffix(domain, ".")
}

// Register creates a user with roles.
func (s *Service) Register(ctx context.Context, r Registration, roles ...string) (User, error) {
	if err := r.Validate(); err != nil {
		return User{}, err
	}
	var hash string
	var hashErr error
	if err := s.gate.run(ctx, func() { hash, hashErr = hashPassword(r.Password) }); err != nil {
		return User{}, err
	}
	if hashErr != nil {
		return User{}, fmt.Errorf("hash password: %w", hashErr)
	}
	u := User{
		ID:           uuid.New(),
		Email:        strings.ToLower(r.Email),
		Name:         r.Name,
		PasswordHash: hash,
		Roles:        append([]string{}, roles...),
		CreatedAt:    time.Now().UTC().Truncate(time.Microsecond), // what PostgreSQL keeps
	}
	if err := s.store.Create(ctx, u); err != nil {
		return User{}, fmt.Errorf("register: %w", err)
	}
	return u, nil
}

// Token is a login's result.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
}

// Login checks the credentials and issues a token. A wrong password and an unknown email give
// the same error after the same work, and lock the same way after repeated failures.
func (s *Service) Login(ctx context.Context, email, password string) (Token, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	key, now := loginKey(email), s.now()
	state, err := s.store.LoginState(ctx, key, now, s.login)
	if err != nil {
		return Token{}, fmt.Errorf("login: %w", err)
	}
	if state.LockedUntil.After(now) { // no password work while locked: guessing costs nothing here
		return Token{}, lockedError(state.LockedUntil.Sub(now))
	}
	u, err := s.store.ByEmail(ctx, email)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, ErrUserNotFound):
		hash = s.dummyHash
	case err != nil:
		return Token{}, fmt.Errorf("login: %w", err)
	}
	var ok bool
	var checkErr error
	if err := s.gate.run(ctx, func() { ok, checkErr = checkPassword(hash, password) }); err != nil {
		return Token{}, err
	}
	if checkErr != nil {
		return Token{}, fmt.Errorf("login: %w", checkErr)
	}
	if !ok || u.ID == uuid.Nil {
		if _, err := s.store.RecordLoginFailure(ctx, key, now, s.login); err != nil {
			return Token{}, fmt.Errorf("login: %w", err)
		}
		return Token{}, ErrBadCredentials
	}
	if state.Failures > 0 {
		if err := s.store.ClearLoginFailures(ctx, key); err != nil {
			return Token{}, fmt.Errorf("login: %w", err)
		}
	}
	tok, err := s.tokens.Sign(u.ID.String(), u.Roles)
	if err != nil {
		return Token{}, err
	}
	return Token{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(s.tokens.TTL().Seconds())}, nil
}

// PruneLoginFailures forgets failures older than the login policy's window.
func (s *Service) PruneLoginFailures(ctx context.Context) (int64, error) {
	now := s.now()
	return s.store.PruneLoginFailures(ctx, now.Add(-s.login.Window), now)
}

// Get returns the user with id.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (User, error) {
	return s.store.ByID(ctx, id)
}

// EnsureAdmin creates the admin account when no user has its email, so that a fresh
// installation has someone who can manage the catalog.
func (s *Service) EnsureAdmin(ctx context.Context, email, password string) (created bool, err error) {
	_, err = s.store.ByEmail(ctx, strings.ToLower(email))
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, ErrUserNotFound) {
		return false, err
	}
	_, err = s.Register(ctx, Registration{Email: email, Password: password, Name: "Administrator"}, "admin")
	if errors.Is(err, ErrEmailTaken) { // another replica won the race
		return false, nil
	}
	return err == nil, err
}
