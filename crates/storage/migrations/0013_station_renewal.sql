-- A station renews its client certificate before it expires. The new certificate is pending
-- (`next_serial`) until the station first calls with it; the old one keeps working until then,
-- so a renewal whose answer was lost costs nothing. A certificate replaced by a newer one (a
-- renewal, or an enrolment with a new code) is retired: calls with it are refused, and the
-- revocation list names it as superseded.
ALTER TABLE stations ADD COLUMN next_serial TEXT;
ALTER TABLE station_certificates ADD COLUMN retired_at BIGINT;
