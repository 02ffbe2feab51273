package users

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/pgdb/pgtest"
)

// stores returns every Store implementation, each fresh; the contract tests run on all.
func stores(t *testing.T) map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"memory":   func(*testing.T) Store { return NewMemoryStore() },
		"postgres": func(t *testing.T) Store { return NewPostgresStore(pgtest.Open(t, Migrations())) },
	}
}

func TestStoreContract(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			u := User{ID: uuid.New(), Email: "ada@example.com", Name: "Ada", PasswordHash: "h",
				Roles: []string{"admin"}, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
			if err := s.Create(ctx, u); err != nil {
				t.Fatalf("Create: %v", err)
			}

			got, err := s.ByID(ctx, u.ID)
			if err != nil {
				t.Fatalf("ByID: %v", err)
			}
			if got.Email != u.Email || got.Name != u.Name || got.PasswordHash != u.PasswordHash ||
				!got.CreatedAt.Equal(u.CreatedAt) || len(got.Roles) != 1 || got.Roles[0] != "admin" {
				t.Errorf("ByID = %+v, want %+v", got, u)
			}
			if got, err := s.ByEmail(ctx, "ada@example.com"); err != nil || got.ID != u.ID {
				t.Errorf("ByEmail = %v, %v; want user %s", got.ID, err, u.ID)
			}

			dup := u
			dup.ID = uuid.New()
			if err := s.Create(ctx, dup); !errors.Is(err, ErrEmailTaken) {
				t.Errorf("Create with the same email = %v, want ErrEmailTaken", err)
			}
			if _, err := s.ByID(ctx, uuid.New()); !errors.Is(err, ErrUserNotFound) {
				t.Errorf("ByID(unknown) = %v, want ErrUserNotFound", err)
			}
			if _, err := s.ByEmail(ctx, "nobody@example.com"); !errors.Is(err, ErrUserNotFound) {
				t.Errorf("ByEmail(unknown) = %v, want ErrUserNotFound", err)
			}
		})
	}
}

func TestPostgresEmailUniqueIgnoresCase(t *testing.T) {
	s := stores(t)["postgres"](t)
	ctx := context.Background()
	if err := s.Create(ctx, User{ID: uuid.New(), Email: "ada@example.com", Name: "A", PasswordHash: "h", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	err := s.Create(ctx, User{ID: uuid.New(), Email: "ADA@example.com", Name: "A", PasswordHash: "h", CreatedAt: time.Now()})
	if !errors.Is(err, ErrEmailTaken) {
		t.Errorf("Create(ADA@example.com) = %v, want ErrEmailTaken", err)
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := hashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := checkPassword(h, "correct horse"); !ok || err != nil {
		t.Errorf("checkPassword(right) = %v, %v", ok, err)
	}
	if ok, err := checkPassword(h, "wrong horse"); ok || err != nil {
		t.Errorf("checkPassword(wrong) = %v, %v", ok, err)
	}
	h2, _ := hashPassword("correct horse")
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	if _, err := checkPassword("$2a$10$bcrypt", "x"); !errors.Is(err, errBadHash) {
		t.Errorf("checkPassword(not argon2id) = %v, want errBadHash", err)
	}
}

// BenchmarkCheckPassword measures the cost of one login's password check.
func BenchmarkCheckPassword(b *testing.B) {
	h, err := hashPassword("correct horse")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := checkPassword(h, "correct horse"); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
