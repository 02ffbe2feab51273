package stockapi

import (
	"strings"
	"testing"
	"time"
)

func TestCheckTiming(t *testing.T) {
	for _, tt := range []struct {
		ttl, margin time.Duration
		ok          bool
	}{
		{DefaultReservationTTL, DefaultConfirmMargin, true},
		{6 * time.Second, 2 * time.Second, true}, // the fault scenario's
		{20 * time.Second, time.Minute, false},   // every order would wait for a margin it never has
		{time.Minute, time.Minute, false},
		{time.Minute + 500*time.Millisecond, time.Minute, false},
		{time.Minute + time.Second, time.Minute, true},
	} {
		err := CheckTiming(tt.ttl, tt.margin)
		if (err == nil) != tt.ok {
			t.Errorf("CheckTiming(%s, %s) = %v, want ok %v", tt.ttl, tt.margin, err, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "RESERVATION_TTL") || !strings.Contains(err.Error(), "CONFIRM_MARGIN")) {
			t.Errorf("%v does not name both keys", err)
		}
	}
}
