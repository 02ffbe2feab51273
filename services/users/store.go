package users

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// MemoryStore keeps users in memory; the default when no database is configured.
type MemoryStore struct {
	mu      sync.RWMutex
	byID    map[uuid.UUID]User
	byEmail map[string]uuid.UUID

	failures map[string]memoryFailures
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{byID: map[uuid.UUID]User{}, byEmail: map[string]uuid.UUID{}, failures: map[string]memoryFailures{}}
}

func (m *MemoryStore) Create(_ context.Context, u User) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, taken := m.byEmail[u.Email]; taken {
		return ErrEmailTaken
	}
	u.Roles = append([]string{}, u.Roles...)
	m.byID[u.ID] = u
	m.byEmail[u.Email] = u.ID
	return nil
}

func (m *MemoryStore) ByEmail(_ context.Context, email string) (User, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	id, ok := m.byEmail[email]
	if !ok {
		return User{}, ErrUserNotFound
	}
	return m.byID[id], nil
}

func (m *MemoryStore) ByID(_ context.Context, id uuid.UUID) (User, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.byID[id]
	if !ok {
		return User{}, ErrUserNotFound
	}
	return u, nil
}
