-- Attempts counted per key in a window of time (wrong enrolment codes, per station and in all),
-- shared by every server of the installation. A window starts with its first attempt.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL
);
