CREATE TABLE products (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency    char(3) NOT NULL,
    -- The CHECK is the last line of defence against overselling.
    stock       integer NOT NULL CHECK (stock >= 0),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- Keyset pagination walks (name, id) in byte order.
CREATE INDEX products_page_idx ON products ((name COLLATE "C"), id);

CREATE TABLE reservations (
    order_id   uuid PRIMARY KEY,
    created_at timestamptz NOT NULL
);

CREATE TABLE reservation_items (
    order_id         uuid NOT NULL REFERENCES reservations (order_id) ON DELETE CASCADE,
    product_id       uuid NOT NULL REFERENCES products (id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL,
    currency         char(3) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
