-- Option scripts with their whole history: every save is a new version.

CREATE TABLE scripts (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    source TEXT NOT NULL,
    saved_at BIGINT NOT NULL,
    saved_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
