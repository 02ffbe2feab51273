CREATE TABLE orders (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    status      text NOT NULL,
    total_cents bigint NOT NULL,
    currency    char(3) NOT NULL,
    created_at  timestamptz NOT NULL
);
-- A customer's orders, newest first.
CREATE INDEX orders_user_page_idx ON orders (user_id, created_at DESC, id DESC);

CREATE TABLE order_items (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id       uuid NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE idempotency_keys (
    user_id      uuid NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    order_id     uuid NOT NULL,
    completed    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
