-- Schema 13: exports of check results (ExportRecord / DescribeExportInfo), downloadable from
-- any node by the capability `token` in their link until `expires_ms`.
CREATE TABLE IF NOT EXISTS exports (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    file_name  TEXT NOT NULL,
    total      INTEGER NOT NULL,
    csv        TEXT NOT NULL,
    json       TEXT NOT NULL,
    token      TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS exports_by_expiry ON exports (expires_ms);
