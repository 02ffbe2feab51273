-- The token signing key all replicas share when no JWT_SIGNING_KEY_FILE is mounted: the first
-- replica to start stores one, every other reads it. PKCS #8 DER of an Ed25519 key.
CREATE TABLE signing_keys (
    name        text PRIMARY KEY,
    private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
