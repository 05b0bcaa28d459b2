-- The certificate revocation list last issued: its number (which only ever grows, as RFC 5280
-- asks), a fingerprint of the revocations it lists, when it was signed, and the list itself.

CREATE TABLE crl_issued (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    number BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    der TEXT NOT NULL
);

INSERT INTO crl_issued (id, number, fingerprint, issued_at, der) VALUES (1, 0, '', 0, '');
