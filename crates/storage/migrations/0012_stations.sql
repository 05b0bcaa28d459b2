-- Stations the server knows: agents at operators' desks that enrol with a single-use code and
-- then call with a client certificate from the built-in CA. `code_sha256` is the hash of the
-- code's secret part while the station is enrolling; `cert_serial` names its current
-- certificate once enrolled.
CREATE TABLE stations (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    disabled BIGINT NOT NULL,
    code_sha256 TEXT,
    code_expires_at BIGINT,
    cert_serial TEXT,
    created_at BIGINT NOT NULL,
    enrolled_at BIGINT,
    last_seen BIGINT,
    version TEXT,
    printer_kind TEXT,
    encoder_kind TEXT,
    updated_at BIGINT NOT NULL
);

-- Client certificates issued to stations. A disabled station's certificate is on hold
-- (`held_at`), which puts it on the revocation list until the station is enabled again.
CREATE TABLE station_certificates (
    serial TEXT PRIMARY KEY,
    station TEXT NOT NULL REFERENCES stations (name),
    der TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    held_at BIGINT
);
CREATE INDEX station_certificates_station ON station_certificates (station);

-- An item produced by a station elsewhere is leased to it: heartbeats move `lease_until`, and
-- an item whose lease ran out is failed as interrupted.
ALTER TABLE batch_order_items ADD COLUMN lease_until BIGINT;

-- The Stations page counts each station's cards of the day.
CREATE INDEX production_attempts_station ON production_attempts (station, finished_at);

-- A batch order may name the station that produces it.
ALTER TABLE batch_orders ADD COLUMN station TEXT;

-- What the server keeps of an attempt at a station elsewhere until its outcome arrives: the
-- options it ran with (for the audit event) and the certificates issued for the chip (JSON),
-- so a server restarted meanwhile records the outcome as the one that handed out the job.
-- `job` is the job as handed out (JSON, without the earlier PUK), and `after` names the attempt
-- whose report handed it out ("order/card/attempt"; NULL when the station asked for it), so a
-- report sent again after a lost answer gets the same next card.
CREATE TABLE station_jobs (
    order_id TEXT NOT NULL REFERENCES batch_orders (id),
    card_id TEXT NOT NULL REFERENCES cards (id),
    attempt BIGINT NOT NULL,
    station TEXT NOT NULL,
    options TEXT NOT NULL,
    encode BIGINT NOT NULL,
    issued TEXT NOT NULL,
    job TEXT NOT NULL,
    after TEXT,
    PRIMARY KEY (order_id, card_id, attempt)
);
CREATE INDEX station_jobs_after ON station_jobs (after);

-- The escrow key stations seal PUKs to: its public key (SubjectPublicKeyInfo, hex), and its
-- private key sealed under the master key as PUKs are.
CREATE TABLE station_escrow (
    id BIGINT PRIMARY KEY,
    public_key TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
