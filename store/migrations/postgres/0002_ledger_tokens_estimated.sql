-- Whether the ledger's token counts were reported by the model server or
-- estimated from the text because it sent no usage.
ALTER TABLE jobs ADD COLUMN ledger_tokens_estimated BOOLEAN NOT NULL DEFAULT FALSE;
