-- Operator administration: an operator can be disabled (its sessions stop working, it cannot log
-- in), and a password a policy-admin reset is a one-time password the operator must change
-- before doing anything else.

ALTER TABLE operators ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1;
ALTER TABLE operators ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
