-- Password checks under way, counted apart from the failures: a check is a failure only once its
-- password turned out wrong, so correct passwords sent at once wait for a free check instead of
-- locking the username. `checking_until` lets the checks of a server that died run out.
ALTER TABLE login_throttle ADD COLUMN checking BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN checking_until BIGINT;
