-- Failed logins per email address (a SHA-256 of the lower-cased address, whether or not an
-- account has it), for the lock that slows down password guessing. Rows older than the
-- policy's window are pruned.
CREATE TABLE login_failures (
    email_key    text PRIMARY KEY,
    failures     integer NOT NULL,
    last_failure timestamptz NOT NULL,
    locked_until timestamptz
);
CREATE INDEX login_failures_last_failure ON login_failures (last_failure);
