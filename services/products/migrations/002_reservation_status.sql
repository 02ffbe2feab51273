-- A reservation is pending until orders confirms it after storing the order; a pending one
-- past expires_at is released by the reconciler. Reservations made before this migration
-- belong to stored orders: they are confirmed.
ALTER TABLE reservations
    ADD COLUMN status text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('pending', 'confirmed')),
    ADD COLUMN expires_at timestamptz,
    ADD CONSTRAINT pending_expires CHECK ((status = 'pending') = (expires_at IS NOT NULL));
ALTER TABLE reservations ALTER COLUMN status DROP DEFAULT;
CREATE INDEX reservations_pending_expiry ON reservations (expires_at) WHERE status = 'pending';
