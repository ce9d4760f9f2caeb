CREATE INDEX segment_memberships_customer ON segment_memberships (customer_id);
