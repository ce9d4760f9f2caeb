CREATE TABLE transactions_by_key (
    id BIGINT PRIMARY KEY NOT NULL,
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    occurred_at TIMESTAMP NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    quantity BIGINT,
    order_id TEXT,
    imported_at TIMESTAMP NOT NULL
);
INSERT INTO transactions_by_key (id, customer_id, occurred_at, amount, quantity, order_id, imported_at)
    SELECT id, customer_id, occurred_at, amount, quantity, order_id, imported_at
    FROM transactions ORDER BY id;
DROP TABLE transactions;
ALTER TABLE transactions_by_key RENAME TO transactions;
CREATE INDEX transactions_customer ON transactions (customer_id, occurred_at);
CREATE INDEX transactions_period ON transactions (occurred_at, customer_id, amount, order_id);
