-- Where the IMA measurement-list replay of a node stands (JSON), kept across verifier restarts.
ALTER TABLE tpm_keys ADD COLUMN ima_state TEXT;
