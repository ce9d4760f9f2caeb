-- Memberships are found by customer through their key (run, customer), one lookup per run
-- (src/db/segmentation.rs `of_customer`: the data-subject export and erasure, a customer's
-- explanations), so the second index by customer goes: every run's million-row write paid
-- for it as much as for the rows themselves, and no other query reads it.
DROP INDEX segment_memberships_customer;
