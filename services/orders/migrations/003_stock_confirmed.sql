-- Whether products has confirmed the order's reservation. An order is stored first, then its
-- reservation confirmed; the reconciler confirms what a crash or an outage left in between.
-- Orders from before this migration had their stock taken for good: confirmed.
ALTER TABLE orders ADD COLUMN stock_confirmed boolean NOT NULL DEFAULT true;
ALTER TABLE orders ALTER COLUMN stock_confirmed DROP DEFAULT;
CREATE INDEX orders_unconfirmed_idx ON orders (created_at) WHERE NOT stock_confirmed;
