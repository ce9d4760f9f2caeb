ALTER TABLE customers
    ALTER COLUMN external_id TYPE TEXT COLLATE "default",
    ALTER COLUMN pseudonym TYPE TEXT COLLATE "default";
