-- The audit log signed with a key kept outside the database: a MAC on every event and a signature
-- on the head. Both stay NULL for events written before signing; the server signs the head of such
-- a log once when it starts.

ALTER TABLE audit_events ADD COLUMN mac TEXT;
ALTER TABLE audit_head ADD COLUMN signature TEXT;
